export {
  type AsyncFirstApp,
  type AsyncFirstBackground,
  type AsyncFirstOptions,
  createAsyncFirst,
  createAsyncFirstWorker,
  type OperationOptions,
} from './app.js';
export { runProcess } from './cli.js';
export { type AsyncFirstConfig, ConfigError, DEFAULT_CONFIG, loadConfig } from './config.js';
export { ContractError, type OpenApiDocument } from './contract/load.js';
export type { ScheduleDefinition } from './contract/schedules.js';
export { servedDocumentOf } from './contract/served.js';
export { FRAMEWORK_OPERATION_IDS, type FrameworkOperationId } from './contract/served-document.js';
export { FINISHED_STATES, JOB_STATES, type JobState } from './core/job-states.js';
export { PROBLEM_TYPE_BASE, PROBLEMS, type ProblemDetails, ProblemError, type ProblemKind } from './core/problems.js';
export { CallbackPolicy } from './delivery/callback-url.js';
export {
  type Notification,
  type NotifiedJob,
  type Notifier,
  type NotifierContext,
  NotifierError,
  notificationText,
  type SlackNotifierOptions,
  slackNotifier,
} from './delivery/notifiers.js';
export { signWebhook, type VerifyOptions, verifyWebhook, WebhookVerificationError } from './delivery/webhook-signature.js';
export { JobEngine } from './engine/job-engine.js';
export type { Enqueue, Enqueued, EnqueueInput, EnqueueOptions } from './enqueue.js';
export type {
  AsyncOperationId,
  FollowUpEnqueue,
  FollowUpOptions,
  HandlerContext,
  Handlers,
  OperationBody,
  OperationHandler,
  OperationInput,
  OperationParams,
  OperationQuery,
  OperationResult,
  SubmissionInput,
} from './handlers.js';
export { HttpProblem, PermanentJobError, ResourceLocation, type ServiceProblem, seeOther } from './handlers.js';
export { ANONYMOUS_PRINCIPAL, type SecurityHandler } from './http/security.js';
export { JobRuntime } from './runtime/job-runtime.js';
export type { Driver } from './store/driver.js';
export { SqliteDriver } from './store/sqlite/sqlite-driver.js';
export type { NotifyEvent, Store } from './store/store.js';
