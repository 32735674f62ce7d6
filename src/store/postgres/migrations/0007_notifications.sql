-- Notifications (out-of-band notifiers, x-asyncfirst.notify) are deliveries too: written in the
-- transaction that finished the job, claimed with a lease, retried with backoff. `notifier` names
-- the notifier of such a row (its url is empty); NULL is a webhook delivery.
ALTER TABLE webhook_deliveries ADD COLUMN notifier text;
