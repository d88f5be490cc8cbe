// plugins/echo-js built for the world batch-handler (handle-batch, lists of records):
// the test of the batch call whose messages and results cross as WIT values.
//
// Build: scripts/build-plugins.sh (componentize-js).

export { handle, handleBatch } from '../echo-js/echo.js';
