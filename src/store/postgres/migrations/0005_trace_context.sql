-- The W3C trace context (JSON {traceparent, tracestate}) active when the job was submitted, so that
-- the worker's span for each attempt can link to the submission's trace. NULL: none was.
ALTER TABLE jobs ADD COLUMN trace_context text;
