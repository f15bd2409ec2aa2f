// npm's remove.bg package, unmodified, sending its requests to our server.
//
// The package posts to a constant (https://api.remove.bg/v1.0/removebg)
// through unirest; the one change is made in unirest, its HTTP library:
// its post() is wrapped to put our base URL (REMOVEBG_BASE) in place of
// remove.bg's. Node caches modules, so the package's require("unirest")
// gets this same, wrapped object.
//
// CALLS (JSON): [{"fn": "removeBackgroundFromImageFile", "options": {...}}, ...];
// API_KEY goes into each call's options, and a call's "base64File" is read
// into its base64img (too large for the environment). Prints one JSON
// result per call.
const fs = require("fs");
const unirest = require("unirest");

const base = process.env.REMOVEBG_BASE;
const post = unirest.post;
unirest.post = function (uri, ...rest) {
  return post.call(this, uri.replace("https://api.remove.bg", base), ...rest);
};

const removebg = require("remove.bg");

async function main() {
  const results = [];
  for (const call of JSON.parse(process.env.CALLS)) {
    const options = Object.assign({ apiKey: process.env.API_KEY }, call.options);
    if (call.base64File) {
      options.base64img = fs.readFileSync(call.base64File, "utf8");
    }
    try {
      const result = await removebg[call.fn](options);
      results.push({
        ok: true,
        bytes: Buffer.from(result.base64img, "base64").length,
        creditsCharged: result.creditsCharged,
        detectedType: result.detectedType,
        resultWidth: result.resultWidth,
        resultHeight: result.resultHeight,
      });
    } catch (errors) {
      results.push({ ok: false, errors });
    }
  }
  process.stdout.write(JSON.stringify(results));
}

main();
