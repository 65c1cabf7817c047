// Generates src/protocol.gen.ts from ../docs/protocol.schema.json (the server's pydantic
// models exported by `python -m confide.schema`). `--check` fails when the committed file
// is not what the schema gives, instead of writing it.
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
export const SCHEMA = here("../../docs/protocol.schema.json");
export const OUTPUT = here("../src/protocol.gen.ts");

export async function generate() {
  const schema = JSON.parse(await readFile(SCHEMA, "utf8"));
  // The root names every type to emit: the frame union and the parts frames carry.
  const parts = ["ConfideFrame", "EncryptedBody", "Features"];
  const root = {
    $defs: { ...schema.$defs, ConfideFrame: { description: schema.description, oneOf: schema.oneOf } },
    title: "ProtocolTypes",
    oneOf: parts.map((name) => ({ $ref: `#/$defs/${name}` })),
  };
  return compile(root, "ProtocolTypes", {
    additionalProperties: false,
    bannerComment:
      "/* Generated from docs/protocol.schema.json by scripts/gen-types.mjs: do not edit. */",
    format: true,
    strictIndexSignatures: true,
    unreachableDefinitions: true,
    style: { singleQuote: false, printWidth: 100 },
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = await generate();
  if (process.argv.includes("--check")) {
    const committed = await readFile(OUTPUT, "utf8").catch(() => "");
    if (committed !== text) {
      console.error("src/protocol.gen.ts differs from docs/protocol.schema.json: npm run gen:types");
      process.exit(1);
    }
  } else {
    await writeFile(OUTPUT, text);
  }
}
