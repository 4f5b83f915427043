// What a receiver doing express.json() then JSON.stringify(req.body) computes, for many
// documents at once: used by tests/test_jsonwire.py to cross-check producer/jsonwire.py.
//
// stdin: one document per line, base64 of its UTF-8 bytes (base64 so that every byte,
// U+2028 and all, reaches JSON.parse unchanged). stdout: one line per input line, in
// order: "ok <base64 of the UTF-8 bytes of JSON.stringify(JSON.parse(document))>", or
// "error <message>" when JSON.parse throws. Node's only dependency here is itself.
const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const text = Buffer.concat(chunks).toString('ascii');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') {
    lines.pop();
  }
  // fatal: invalid UTF-8 must fail loudly rather than turn into U+FFFD.
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const out = lines.map((line) => {
    try {
      const json = utf8.decode(Buffer.from(line, 'base64'));
      return 'ok ' + Buffer.from(JSON.stringify(JSON.parse(json)), 'utf8').toString('base64');
    } catch (err) {
      return 'error ' + String(err.message).replace(/\n/g, ' ');
    }
  });
  process.stdout.write(out.map((line) => line + '\n').join(''));
});
