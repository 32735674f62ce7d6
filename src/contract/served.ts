import { loadContract, type OpenApiDocument, readContractFile } from './load.js';
import { describeOperations } from './operations.js';
import { buildServedDocument } from './served-document.js';

/** Loads a contract file and returns the document asyncfirst serves for it (without starting anything). */
export async function servedDocumentOf(contractPath: string): Promise<OpenApiDocument> {
  const contract = await loadContract(await readContractFile(contractPath), contractPath);
  return buildServedDocument(contract.document, describeOperations(contract));
}
