import { runProcess } from '../cli.js';
import { createDemo } from './service.js';

await runProcess(() => createDemo());
