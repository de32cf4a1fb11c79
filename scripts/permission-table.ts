/** Prints the README's permission table from src/http/permissions.ts (`npx tsx scripts/permission-table.ts`). */
import { permissionTableRows } from '../src/http/permissions.js';

for (const row of permissionTableRows()) console.log(row);
