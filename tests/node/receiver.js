// The seed's Express.js webhook endpoint, run for real by the integration tests.
//
// It verifies `X-Cliq-Signature` exactly as the seed's `verifySignature` does: an HMAC of
// `JSON.stringify(req.body)` (the body *as express.json() re-serialises it*), not of the
// raw bytes. The only change is a guard so that a signature of the wrong length answers
// 401 instead of throwing from crypto.timingSafeEqual.
//
// Usage: CLIQ_WEBHOOK_SECRET=... node receiver.js
// Listens on 127.0.0.1 on a port the OS picks and prints that port as its first stdout
// line. GET /received returns [{valid, event_id, type, signature}, ...] for the tests.
import express from 'express';
import crypto from 'crypto';

if (!process.env.CLIQ_WEBHOOK_SECRET) {
  console.error('CLIQ_WEBHOOK_SECRET is not set');
  process.exit(2);
}

function verifySignature(payload, signature) {
  const secret = process.env.CLIQ_WEBHOOK_SECRET;
  const expectedSignature = crypto.createHmac('sha256', secret).update(JSON.stringify(payload)).digest('hex');
  // Guard (not in the seed): timingSafeEqual throws when the lengths differ.
  if (typeof signature !== 'string' || Buffer.byteLength(signature) !== Buffer.byteLength(expectedSignature)) {
    return false;
  }
  return crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expectedSignature));
}

const received = [];
const processedEvents = new Set();

function processEvent(event) {
  // The seed's "Handle Duplicates" advice: act on each event id once.
  if (processedEvents.has(event.id)) {
    return;
  }
  processedEvents.add(event.id);
}

const app = express();
app.use(express.json());

app.post('/webhooks/cliq', (req, res) => {
  // Verify the webhook signature
  const signature = req.headers['x-cliq-signature'];
  // A request without a JSON body leaves req.body undefined, and JSON.stringify(undefined)
  // cannot be hashed: such a request is simply not validly signed.
  const isValid = req.body !== undefined && verifySignature(req.body, signature);
  received.push({
    valid: isValid,
    event_id: req.body?.id ?? null,
    type: req.body?.type ?? null,
    signature: signature ?? null,
  });
  if (!isValid) {
    return res.status(401).send('Invalid signature');
  }
  // Process the event
  const event = req.body;
  console.log('Received event:', event.type);
  // Respond quickly
  res.status(200).send('OK');
  // Process asynchronously
  processEvent(event);
});

app.get('/received', (req, res) => {
  res.json(received);
});

// Express 5 calls this back with the error too if listening fails.
const server = app.listen(0, '127.0.0.1', (err) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(String(server.address().port));
});

process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
