// media-gateway direct uploads: no build step, no dependencies.
//
// Every element with data-direct-upload holds a file input (with no name, so the file
// itself never goes to the app), a hidden input that gets the receipt, a <progress>
// and a [data-status]. On a file choice it asks the gateway's endpoint
// (data-endpoint) for where to PUT the file with the ticket (data-token), sends it
// there (in parts when the answer has parts), and puts the receipt into the form.
"use strict";
(function () {
  function send(method, url, headers, body, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      Object.keys(headers || {}).forEach(function (name) {
        xhr.setRequestHeader(name, headers[name]);
      });
      if (onProgress) {
        xhr.upload.onprogress = function (event) { onProgress(event.loaded); };
      }
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) { resolve(xhr); }
        else { reject(new Error(errorOf(xhr))); }
      };
      xhr.onerror = function () { reject(new Error("network error")); };
      xhr.send(body);
    });
  }

  function errorOf(xhr) {
    try { return JSON.parse(xhr.responseText).error; }
    catch (e) { return "refused (" + xhr.status + ")"; }
  }

  function post(endpoint, value) {
    return send("POST", endpoint, {"Content-Type": "application/json"}, JSON.stringify(value))
      .then(function (xhr) { return JSON.parse(xhr.responseText); });
  }

  async function upload(box, file) {
    var progress = box.querySelector("progress");
    var status = box.querySelector("[data-status]");
    var receipt = box.querySelector("input[type=hidden]");
    var endpoint = box.dataset.endpoint;
    var show = function (done) { progress.value = file.size ? done / file.size : 1; };
    receipt.value = "";
    progress.hidden = false;
    show(0);
    status.textContent = "uploading " + file.name;
    box.dispatchEvent(new CustomEvent("direct-upload:start", {bubbles: true}));
    try {
      var plan = await post(endpoint, {
        token: box.dataset.token,
        filename: file.name,
        size: file.size,
        content_type: file.type || "application/octet-stream"
      });
      if (plan.parts) {
        var done = [];
        for (var i = 0; i < plan.parts.length; i++) {
          var part = plan.parts[i];
          var start = (part.number - 1) * plan.part_size;
          var xhr = await send("PUT", part.url, {}, file.slice(start, start + part.size),
            function (loaded) { show(start + loaded); });
          // The bucket's CORS rule must expose ETag (README "Direct uploads").
          done.push({number: part.number, etag: xhr.getResponseHeader("ETag")});
        }
        plan.receipt = (await post(endpoint, {complete: plan.complete, parts: done})).receipt;
      } else {
        await send(plan.method, plan.url, plan.headers, file, show);
      }
      receipt.value = plan.receipt;
      show(file.size);
      status.textContent = file.name + " uploaded";
      box.dispatchEvent(new CustomEvent("direct-upload:done", {bubbles: true, detail: plan}));
    } catch (error) {
      status.textContent = "upload failed: " + error.message;
      box.dispatchEvent(new CustomEvent("direct-upload:error", {bubbles: true, detail: error}));
    }
  }

  function attach(box) {
    if (box.dataset.directUploadReady) { return; }
    box.dataset.directUploadReady = "1";
    box.querySelector("input[type=file]").addEventListener("change", function (event) {
      if (event.target.files.length) { upload(box, event.target.files[0]); }
    });
  }

  function attachAll() { document.querySelectorAll("[data-direct-upload]").forEach(attach); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", attachAll);
  } else {
    attachAll();
  }
})();
