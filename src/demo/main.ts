import { runProcess } from '../cli.js';
import { demoOptions } from './service.js';

await runProcess(() => demoOptions({ logReports: true }));
