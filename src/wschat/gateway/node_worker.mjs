// A function worker for Node.js runtimes: one warm Lambda execution environment, in its own
// process, as worker_main.py is for Python ones.
//
// It speaks the same pipe protocol (wschat/gateway/ipc.py: 4-byte big-endian length, then
// JSON): it answers "ready" {ok} once the handler's module is loaded, then each "invoke"
// {id, event, context{request_id, deadline_ms}} with a "result" {id, ok, value | error}.
// Handlers are found and called the way Lambda's Node.js runtime does it: "dir/file.export",
// file.js (CommonJS, or ESM under package.json "type": "module"), .mjs or .cjs; async handlers
// and callback (3-argument) handlers, with callbackWaitsForEmptyEventLoop. Module state
// survives between invocations. An uncaught exception or unhandled rejection fails the
// invocation and ends the process, as Lambda replaces such an environment; the gateway enforces
// timeouts by killing the process. console output goes to stdout, each line prefixed with the
// time, request id and level as Lambda writes it to CloudWatch.
//
// Run as `node node_worker.mjs`; configured by WSCHAT_WORKER_* variables, which are removed
// from the environment before the handler's module is loaded.

import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import util from "node:util";

// Lambda's Node.js runtime ends an environment after an uncaught error with this status.
const CRASH_STATUS = 129;

const settings = takeSettings();
let output = null;
let currentRequestId; // undefined outside an invocation, as Lambda's log lines show it
let handler = null;
let initError = null;
let current = null; // the invocation running now
const waiting = [];
let input = null;

function takeSettings() {
  const env = process.env;
  const take = (name, fallback) => {
    const value = env[name] ?? fallback;
    delete env[name];
    return value;
  };
  const taken = {
    handler: take("WSCHAT_WORKER_HANDLER"),
    functionName: take("WSCHAT_WORKER_FUNCTION_NAME"),
    memoryMb: take("WSCHAT_WORKER_MEMORY", "128"),
    codeDir: take("WSCHAT_WORKER_CODE_DIR"),
    inFd: Number(take("WSCHAT_WORKER_IN_FD")),
    outFd: Number(take("WSCHAT_WORKER_OUT_FD")),
  };
  // The rest (the Python fast path's endpoints) is not for user code either.
  for (const name of Object.keys(env)) {
    if (name.startsWith("WSCHAT_WORKER_")) delete env[name];
  }
  return taken;
}

// --- the pipe ---------------------------------------------------------------------------------

class PipeWriter {
  constructor(fd) {
    this.fd = fd;
  }

  send(message) {
    this.sendJson(JSON.stringify(message));
  }

  // Synchronous writes: a result is on its way before the process may exit after a crash.
  sendJson(json) {
    const payload = Buffer.from(json, "utf8");
    const header = Buffer.alloc(4);
    header.writeUInt32BE(payload.length);
    let data = Buffer.concat([header, payload]);
    try {
      while (data.length > 0) data = data.subarray(fs.writeSync(this.fd, data));
    } catch {
      process.exit(0); // the gateway is gone
    }
  }
}

function readMessages(fd, onMessage) {
  // A pipe handle (not a blocking fs read): an idle worker holds no thread-pool thread.
  const socket = new net.Socket({ fd, readable: true, writable: false });
  let buffer = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 4) {
      const end = 4 + buffer.readUInt32BE(0);
      if (buffer.length < end) break;
      const message = JSON.parse(buffer.subarray(4, end).toString("utf8"));
      buffer = buffer.subarray(end);
      onMessage(message);
    }
  });
  // The gateway closed the pipe (stopped, or killed): nobody is left to answer.
  socket.on("end", () => process.exit(0));
  socket.on("error", () => process.exit(0));
  return socket;
}

// --- logging ----------------------------------------------------------------------------------

function patchConsole() {
  const levels = {
    log: "INFO",
    info: "INFO",
    warn: "WARN",
    error: "ERROR",
    debug: "DEBUG",
    trace: "TRACE",
  };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t`;
      process.stdout.write(`${line}${util.format(...args)}\n`);
    };
  }
}

function warnOfOtherNodeVersion() {
  // The runtime the template names (AWS_EXECUTION_ENV, AWS_Lambda_nodejs20.x) may not be the
  // node on this machine's PATH: say so once per environment, the code runs anyway.
  const declared = /nodejs(\d+)\.x$/.exec(process.env.AWS_EXECUTION_ENV ?? "");
  const running = process.versions.node.split(".")[0];
  if (declared && declared[1] !== running) {
    console.warn(`Runtime nodejs${declared[1]}.x runs on Node.js ${process.version} here`);
  }
}

// --- loading the handler ----------------------------------------------------------------------

class RuntimeError extends Error {
  constructor(errorType, message, cause) {
    super(message);
    this.name = errorType;
    // The user code's stack if there is one; the runtime's own frames would say nothing.
    this.stack = cause?.stack ?? "";
  }
}

async function loadHandler(codeDir, fullHandler) {
  // "src/app.handler": module root "src/", then the base name split at its first dot.
  const base = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - base.length);
  const match = /^([^.]*)\.(.*)$/.exec(base);
  if (!match) throw new RuntimeError("Runtime.MalformedHandlerName", "Bad handler");
  const [, moduleName, exportPath] = match;
  const loaded = await loadModule(path.resolve(codeDir, moduleRoot, moduleName), moduleName);
  const found = exportPath.split(".").reduce((object, key) => object?.[key], loaded);
  if (found === undefined) {
    throw new RuntimeError(
      "Runtime.HandlerNotFound",
      `${fullHandler} is undefined or not exported`,
    );
  }
  if (typeof found !== "function") {
    throw new RuntimeError("Runtime.HandlerNotFound", `${fullHandler} is not a function`);
  }
  return found;
}

async function loadModule(base, moduleName) {
  // Lambda's order: file.js (required unless package.json says "type": "module"), then
  // file.mjs (imported), then file.cjs (required).
  const jsIsModule = nearestPackageType(path.dirname(base)) === "module";
  const candidates = [
    [".js", jsIsModule],
    [".mjs", true],
    [".cjs", false],
  ];
  for (const [extension, isModule] of candidates) {
    const file = base + extension;
    if (!fs.existsSync(file)) continue;
    try {
      return isModule ? await import(pathToFileURL(file).href) : createRequire(file)(file);
    } catch (error) {
      throw asInitError(error, file);
    }
  }
  const error = new Error(`Cannot find module '${moduleName}'`);
  throw new RuntimeError("Runtime.ImportModuleError", `Error: ${error.message}`, error);
}

function nearestPackageType(directory) {
  for (let dir = directory; ; dir = path.dirname(dir)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).type;
    } catch (error) {
      if (error.code !== "ENOENT") return undefined; // unreadable, or not JSON: Node's default
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

function asInitError(error, file) {
  // Named as Lambda's Node.js runtime names them; any other error keeps its own name.
  if (error instanceof SyntaxError) {
    const syntax = new RuntimeError(
      "Runtime.UserCodeSyntaxError",
      `${error.name}: ${error.message}`,
      error,
    );
    // An ES module's syntax error has no frame of its file: name it.
    if (!syntax.stack.includes(file)) syntax.stack += `\n    in ${file}`;
    return syntax;
  }
  if (error?.code === "MODULE_NOT_FOUND" || error?.code === "ERR_MODULE_NOT_FOUND") {
    return new RuntimeError("Runtime.ImportModuleError", `${error.name}: ${error.message}`, error);
  }
  return error;
}

// --- invocations ------------------------------------------------------------------------------

function errorInfo(error, errorType) {
  if (util.types.isNativeError(error) || error instanceof Error) {
    return {
      errorType: errorType ?? error.name,
      errorMessage: error.message,
      // Node's Lambda error shape has "trace", a list of lines; the gateway logs stackTrace
      // joined, as Python's formatted traceback lines come.
      stackTrace: String(error.stack ?? "")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => `${line}\n`),
    };
  }
  return { errorType: errorType ?? typeof error, errorMessage: String(error), stackTrace: [] };
}

function makeContext(invocation, { request_id: requestId, deadline_ms: deadlineMs }) {
  const { functionName, memoryMb } = settings;
  const region = process.env.AWS_REGION ?? "us-east-1";
  let waitsForEmptyEventLoop = true;
  const callback = invocation.callback;
  return {
    awsRequestId: requestId,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:${region}:123456789012:function:${functionName}`,
    memoryLimitInMB: String(memoryMb), // a string on Lambda too
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/[$LATEST]${process.pid}`,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis: () => Math.max(0, deadlineMs - Date.now()),
    get callbackWaitsForEmptyEventLoop() {
      return waitsForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitsForEmptyEventLoop = Boolean(value);
    },
    // The runtime's older way to answer.
    done: (error, value) => callback(error, value),
    succeed: (value) => callback(null, value),
    fail: (error) => callback(error ?? "handled"),
  };
}

function invoke(message) {
  if (current !== null) {
    waiting.push(message);
    return;
  }
  const invocation = { id: message.id, done: false, answer: undefined };
  current = invocation;
  currentRequestId = message.context.request_id;
  invocation.finish = (outcome) => finish(invocation, outcome);
  invocation.callback = (error, value) => {
    const outcome = error !== undefined && error !== null ? { error } : { value };
    if (invocation.context.callbackWaitsForEmptyEventLoop) {
      invocation.answer ??= outcome; // sent once nothing is left to run ("beforeExit")
    } else {
      invocation.finish(outcome);
    }
  };
  invocation.context = makeContext(invocation, message.context);
  if (handler === null) {
    invocation.finish({ info: initError });
    return;
  }
  // Only the handler's own work keeps the event loop alive now, so "beforeExit" says when it
  // is all done, as on Lambda.
  input.unref();
  try {
    const result = handler(message.event, invocation.context, invocation.callback);
    if (typeof result?.then === "function") {
      result.then(
        (value) => invocation.finish({ value }),
        (error) => invocation.finish({ error }),
      );
    }
  } catch (error) {
    invocation.finish({ error });
  }
}

function finish(invocation, outcome, exiting = false) {
  if (invocation.done) return;
  invocation.done = true;
  const head = { op: "result", id: invocation.id, ...(exiting ? { exiting } : {}) };
  if ("value" in outcome) {
    let json;
    try {
      json = JSON.stringify(outcome.value === undefined ? null : outcome.value);
    } catch (error) {
      const marshal = errorInfo(error, "Runtime.MarshalError");
      marshal.errorMessage = `Unable to stringify response body: ${error.message}`;
      output.send({ ...head, ok: false, error: marshal });
      return settle();
    }
    output.sendJson(`${JSON.stringify({ ...head, ok: true }).slice(0, -1)},"value":${json}}`);
  } else {
    const info = outcome.info ?? errorInfo(outcome.error);
    if ("error" in outcome) console.error(`Invoke Error ${JSON.stringify(info)}`);
    output.send({ ...head, ok: false, error: info });
  }
  settle();
}

function settle() {
  current = null;
  currentRequestId = undefined;
  input.ref();
  if (waiting.length > 0) invoke(waiting.shift());
}

function onEmptyEventLoop() {
  // The handler's callback was called (or never will be): what it gave, or null, as Lambda's
  // runtime answers when the event loop empties.
  if (current !== null) current.finish(current.answer ?? { value: null });
}

function crash(error, errorType, what) {
  const info = errorInfo(error, errorType);
  console.error(`${what} ${JSON.stringify(info)}`);
  if (current !== null) finish(current, { info }, true);
  process.exit(CRASH_STATUS);
}

// --- start ------------------------------------------------------------------------------------

async function main() {
  output = new PipeWriter(settings.outFd);
  patchConsole();
  process.on("uncaughtException", (error) => crash(error, undefined, "Uncaught Exception"));
  process.on("unhandledRejection", (reason) => {
    const error = new RuntimeError("Runtime.UnhandledPromiseRejection", String(reason), reason);
    crash(error, undefined, "Unhandled Promise Rejection");
  });
  process.on("beforeExit", onEmptyEventLoop);
  // Like Lambda's /var/task: the code directory is the working directory.
  process.chdir(settings.codeDir);
  warnOfOtherNodeVersion();
  try {
    handler = await loadHandler(settings.codeDir, settings.handler);
  } catch (error) {
    initError = errorInfo(error);
    console.error(`Init Error ${JSON.stringify(initError)}`);
  }
  output.send({ op: "ready", ok: initError === null });
  input = readMessages(settings.inFd, (message) => {
    if (message.op === "invoke") invoke(message);
  });
}

await main();
