// The upload page, the job page and the dashboard's copy button.
// Plain JavaScript: no framework, no build step.
(function () {
  "use strict";

  // The status endpoint answers as soon as the job ends (?wait=), or after
  // WAIT_SECONDS with the current progress, which the bar then shows.
  var WAIT_SECONDS = 2;
  var RETRY_MS = 2000;

  function $(id) { return document.getElementById(id); }

  function formatBytes(bytes) {
    if (bytes == null) return "–";
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1048576).toFixed(2) + " MB";
  }

  // Service messages are sentences, some without their final full stop.
  function sentence(text) {
    text = String(text || "").trim();
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function setBalance(value) {
    var el = $("balance");
    if (el && value != null) el.textContent = value;
  }

  // --- job panel: progress, then before/after --------------------------
  function showProgress(progress, message) {
    var pct = Math.max(0, Math.min(100, progress | 0));
    $("job-progress-fill").style.width = pct + "%";
    $("job-percent").textContent = pct + " %";
    $("job-progressbar").setAttribute("aria-valuenow", String(pct));
    if (message) $("job-message").textContent = message;
  }

  function showResult(job) {
    $("job-result").hidden = false;
    var before = $("job-before");
    if (job.input_url) {
      before.src = job.input_url;
    } else {
      before.replaceWith(document.createTextNode("The original was deleted when it expired."));
    }
    var download = $("job-download");
    var format = String(job.output_format || "png").toUpperCase();
    download.textContent = "Download " + format;
    if (job.output_url) {
      // The "after" picture is the output file itself, shown on the
      // checkerboard: exactly what the download gives (a zip cannot be shown).
      var zip = job.output_format === "zip";
      $("job-after").hidden = zip;
      $("job-after-note").hidden = !zip;
      if (!zip) $("job-after").src = job.output_url;
      download.href = job.output_url;
      download.setAttribute("download", job.output_filename);
      download.removeAttribute("aria-disabled");
    } else {
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
      $("job-expired").hidden = false;
    }
    $("job-output-size").textContent = formatBytes(job.output_size);
    var result = job.result || {};
    $("job-dimensions").textContent = result.width
      ? result.width + " × " + result.height
      : job.width + " × " + job.height;
    if (job.options_summary) $("job-options").textContent = job.options_summary;
    $("job-elapsed").textContent = job.elapsed_seconds != null ? job.elapsed_seconds.toFixed(2) + " s" : "–";
    $("job-model").textContent = job.model;
    showZoom(job);
  }

  // --- edge close-up: a small piece of the edge, before and after ------
  // The spot is where the result has the most partly transparent pixels
  // (hair, fur), found on a small copy of the result; both pictures are
  // then cropped there at full resolution and drawn magnified.
  var ZOOM_SCAN = 160;  // the small copy's longer side, in pixels
  var ZOOM_CELLS = 12;  // the small copy is searched in cells this many times across

  function imageReady(img) {
    return new Promise(function (resolve, reject) {
      if (img.complete && img.naturalWidth) { resolve(img); return; }
      img.addEventListener("load", function () { resolve(img); }, { once: true });
      img.addEventListener("error", reject, { once: true });
    });
  }

  function edgeSpot(img) {
    var scale = ZOOM_SCAN / Math.max(img.naturalWidth, img.naturalHeight);
    var width = Math.max(1, Math.round(img.naturalWidth * scale));
    var height = Math.max(1, Math.round(img.naturalHeight * scale));
    var canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    var context = canvas.getContext("2d");
    context.drawImage(img, 0, 0, width, height);
    var pixels = context.getImageData(0, 0, width, height).data;  // throws if cross-origin
    var cell = Math.max(1, Math.ceil(Math.max(width, height) / ZOOM_CELLS));
    var columns = Math.ceil(width / cell);
    var cells = [];
    for (var y = 0; y < height; y++) {
      for (var x = 0; x < width; x++) {
        var alpha = pixels[(y * width + x) * 4 + 3];
        var index = Math.floor(y / cell) * columns + Math.floor(x / cell);
        var counts = cells[index] || (cells[index] = { soft: 0, solid: 0, clear: 0 });
        if (alpha < 24) counts.clear++;
        else if (alpha > 232) counts.solid++;
        else counts.soft++;
      }
    }
    // The subject's edge: a cell that is at least a fifth subject and a
    // fifth background, with the most soft pixels between them (a soft
    // patch alone is more often a shadow the model half kept), higher up
    // counting more (hair); else the most soft pixels anywhere (a subject
    // that fills the frame).
    var best = -1;
    var bestScore = 0;
    var fifth = (cell * cell) / 5;
    var rows = Math.ceil(height / cell);
    cells.forEach(function (counts, index) {
      if (!counts || !counts.soft) return;
      var edge = counts.solid >= fifth && counts.clear >= fifth;
      var upper = 1.5 - Math.floor(index / columns) / rows;
      var score = edge ? cell * cell + counts.soft * upper : counts.soft;
      if (score > bestScore) { best = index; bestScore = score; }
    });
    if (best < 0) return null;
    return {
      x: ((best % columns) + 0.5) * cell / scale,
      y: (Math.floor(best / columns) + 0.5) * cell / scale,
    };
  }

  function drawPiece(canvas, img, spot, side) {
    var left = Math.min(Math.max(0, Math.round(spot.x - side / 2)), img.naturalWidth - side);
    var top = Math.min(Math.max(0, Math.round(spot.y - side / 2)), img.naturalHeight - side);
    var context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(img, left, top, side, side, 0, 0, canvas.width, canvas.height);
    canvas.setAttribute("data-piece", left + "," + top + "," + side);
  }

  function showZoom(job) {
    var zoom = $("job-zoom");
    if (!zoom) return;
    zoom.hidden = true;
    // A zip cannot be shown; a JPG, a mask or an opaque background has no
    // partly transparent pixel, so no spot is found and nothing is shown.
    if (!job.input_url || !job.output_url || job.output_format === "zip") return;
    var before = $("job-before");
    var after = $("job-after");
    Promise.all([imageReady(before), imageReady(after)]).then(function () {
      // A smaller result (size, max_width) lines up once scaled; a crop does not.
      var ratio = before.naturalWidth / after.naturalWidth;
      if (Math.abs(before.naturalHeight / after.naturalHeight - ratio) > 0.01 * ratio) return;
      var spot = edgeSpot(after);
      if (!spot) return;
      var side = Math.max(16, Math.min(96, Math.round(Math.min(after.naturalWidth, after.naturalHeight) / 16)));
      side = Math.min(side, after.naturalWidth, after.naturalHeight);
      drawPiece($("job-zoom-after"), after, spot, side);
      drawPiece($("job-zoom-before"), before, { x: spot.x * ratio, y: spot.y * ratio },
        Math.max(1, Math.round(side * ratio)));
      var canvas = $("job-zoom-after");
      $("job-zoom-note").textContent = "A " + side + " × " + side + " pixel piece of the edge, " +
        (canvas.width / side).toFixed(1) + "× magnified.";
      zoom.hidden = false;
    }).catch(function () { /* an image that cannot be read: no close-up */ });
  }

  function showFailure(job) {
    showPanelError(sentence(job.error || "The background could not be removed") +
      " The credits for this image were refunded.");
  }

  function showPanelError(text) {
    var box = $("job-failed");
    box.textContent = text;
    box.hidden = false;
    $("job-progress").hidden = true;
  }

  function render(job) {
    setBalance(job.balance);
    if (job.status === "failed") { showFailure(job); return true; }
    showProgress(job.progress, job.message);
    if (job.status === "completed") { showResult(job); return true; }
    return false;
  }

  function poll(statusUrl) {
    var url = statusUrl + (statusUrl.indexOf("?") < 0 ? "?" : "&") + "wait=" + WAIT_SECONDS;
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (reply) {
        if (!reply.ok) {
          // The status request itself was refused (e.g. the session ended);
          // the job is unaffected.
          showPanelError(sentence(reply.body.error));
          return;
        }
        if (!render(reply.body)) poll(statusUrl);
      })
      .catch(function () {
        // A dropped connection is not a failed job: keep asking.
        setTimeout(function () { poll(statusUrl); }, RETRY_MS);
      });
  }

  function resetPanel(fileName) {
    var panel = $("job-panel");
    panel.hidden = false;
    $("job-heading").textContent = fileName || "Your image";
    $("job-progress").hidden = false;
    $("job-failed").hidden = true;
    $("job-result").hidden = true;
    $("job-expired").hidden = true;
    if ($("job-zoom")) $("job-zoom").hidden = true;
    showProgress(0, "Uploading…");
  }

  // --- several photos at once: a batch, a row per photo, one ZIP ---------
  var ROW_WORDS = {
    pending: "Waiting for a worker…",
    processing: "Removing the background…",
    completed: "Done",
  };

  function setRow(row, status, pct, words, error) {
    pct = Math.max(0, Math.min(100, pct | 0));
    row.setAttribute("data-status", status);
    row.querySelector(".progress-fill").style.width = pct + "%";
    row.querySelector(".progress").setAttribute("aria-valuenow", String(pct));
    row.querySelector(".batch-state").textContent = words;
    var box = row.querySelector(".batch-error");
    box.hidden = !error;
    box.textContent = error || "";
  }

  function batchRows(files) {
    var panel = $("batch-panel");
    var list = $("batch-items");
    list.textContent = "";
    panel.hidden = false;
    $("job-panel").hidden = true;
    $("batch-actions").hidden = true;
    $("batch-note").hidden = true;
    $("batch-failed").hidden = true;
    $("batch-message").textContent = "Uploading " + files.length + " photos…";
    $("batch-percent").textContent = "0 %";
    return files.map(function (file) {
      var row = $("batch-row").content.firstElementChild.cloneNode(true);
      row.querySelector(".batch-name").textContent = file.name;
      row.querySelector(".progress").setAttribute("aria-label", file.name);
      list.appendChild(row);
      setRow(row, "uploading", 0, "Uploading…");
      return row;
    });
  }

  // Each item of the batch's status JSON onto its row (items keep the
  // order the photos were sent in: index = row).
  function renderBatch(batch, rows) {
    batch.items.forEach(function (item) {
      var row = rows[item.index];
      if (!row) return;
      if (item.status === "refused") {
        setRow(row, "refused", 0, "Not accepted", sentence(item.error) + " Not charged.");
      } else if (item.status === "failed") {
        setRow(row, "failed", 100, "Failed", sentence(item.error) + " Refunded.");
      } else {
        setRow(row, item.status, item.status === "completed" ? 100 : item.progress,
          ROW_WORDS[item.status] || item.status);
      }
    });
    var counts = batch.counts || {};
    var ended = (counts.completed || 0) + (counts.failed || 0);
    var total = ended + (counts.pending || 0) + (counts.processing || 0);
    $("batch-percent").textContent = batch.progress + " %";
    $("batch-message").textContent = ended + " of " + total + " done" +
      (counts.failed ? " (" + counts.failed + " failed, refunded)" : "") +
      (counts.refused ? ", " + counts.refused + " not accepted" : "");
    if (batch.status === "ended") {
      var link = $("batch-download");
      link.href = batch.endpoints.download_zip;
      link.setAttribute("download", "batch-" + batch.batch_id + ".zip");
      $("batch-actions").hidden = false;
      $("batch-note").hidden = false;
      return true;
    }
    return false;
  }

  function pollBatch(statusUrl, rows) {
    var url = statusUrl + "?wait=" + WAIT_SECONDS;
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (reply) {
        if (!reply.ok) {
          var box = $("batch-failed");
          box.textContent = sentence(reply.body.error);
          box.hidden = false;
          return;
        }
        if (!renderBatch(reply.body, rows)) pollBatch(statusUrl, rows);
      })
      .catch(function () {
        setTimeout(function () { pollBatch(statusUrl, rows); }, RETRY_MS);
      });
  }

  // One request with every photo; while it uploads, each row shows how
  // much of its own bytes went (the photos travel in order).
  function submitBatch(form, files, done, showError) {
    var data = new FormData(form);
    data.delete("file");
    files.forEach(function (file) { data.append("files", file, file.name); });
    var rows = batchRows(files);
    var request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("data-batch-action"));
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      var sent = event.loaded / event.total * files.reduce(function (sum, f) { return sum + f.size; }, 0);
      files.forEach(function (file, index) {
        var pct = file.size ? Math.min(100, Math.max(0, sent / file.size * 100)) : 100;
        sent -= file.size;
        setRow(rows[index], "uploading", pct, pct >= 100 ? "Uploaded" : "Uploading…");
      });
    });
    request.addEventListener("load", function () {
      done();
      var body;
      try { body = JSON.parse(request.responseText); } catch (e) {
        body = { error: request.status === 403
          ? "Your session has expired; reload the page and try again"
          : "The server could not take the upload (status " + request.status + ")" };
      }
      if (request.status !== 202) {
        $("batch-panel").hidden = true;
        showError(sentence(body.error) + " Nothing was charged.");
        return;
      }
      setBalance(body.balance);
      renderBatch(body, rows);
      $("batch-panel").scrollIntoView({ behavior: "smooth", block: "start" });
      pollBatch(body.endpoints.check_status, rows);
    });
    request.addEventListener("error", function () {
      done();
      $("batch-panel").hidden = true;
      showError("The upload did not reach the server; check your connection and try again. Nothing was charged.");
    });
    request.send(data);
  }

  // --- options panel: remembered between visits -----------------------
  var OPTIONS_KEY = "revid.upload-options";

  function optionInputs(panel) {
    return Array.prototype.filter.call(
      panel.querySelectorAll("input[id], select[id]"),
      function (el) { return el.type !== "file"; }
    );
  }

  function readStored() {
    try { return JSON.parse(window.localStorage.getItem(OPTIONS_KEY) || "{}") || {}; }
    catch (e) { return {}; }
  }

  function setupOptions(panel) {
    var inputs = optionInputs(panel);
    // The page's own defaults, for "Reset options" (a select's is the option
    // marked "selected", not its value now).
    var defaults = {};
    inputs.forEach(function (el) {
      if (el.type === "checkbox") {
        defaults[el.id] = el.defaultChecked;
      } else if (el.tagName === "SELECT") {
        var marked = el.querySelector("option[selected]") || el.options[0];
        defaults[el.id] = marked ? marked.value : "";
      } else {
        defaults[el.id] = el.defaultValue;
      }
    });

    // Dependent fields are disabled, so the form does not send them.
    function sync() {
      // Each field names the checkbox that enables it (the option table's enabled_by).
      Array.prototype.forEach.call(panel.querySelectorAll("[data-enabled-by]"), function (el) {
        var toggle = $(el.getAttribute("data-enabled-by"));
        el.disabled = !(toggle && toggle.checked);
      });
      $("opt-format-hint").hidden = !($("opt-format").value === "jpg" && !$("opt-bg").checked);
    }

    function save() {
      var values = { open: panel.open, advanced: $("options-advanced").open };
      inputs.forEach(function (el) {
        values[el.id] = el.type === "checkbox" ? el.checked : el.value;
      });
      try { window.localStorage.setItem(OPTIONS_KEY, JSON.stringify(values)); }
      catch (e) { /* storage full or disabled: the choice is just not remembered */ }
    }

    function apply(values) {
      inputs.forEach(function (el) {
        if (!(el.id in values)) return;
        if (el.type === "checkbox") {
          el.checked = !!values[el.id];
        } else {
          var before = el.value;
          el.value = values[el.id];
          if (el.tagName === "SELECT" && el.value === "") el.value = before;
        }
      });
      sync();
    }

    var stored = readStored();
    apply(stored);
    if (stored.open) panel.open = true;
    if (stored.advanced) $("options-advanced").open = true;
    panel.addEventListener("change", function () { sync(); save(); });
    panel.addEventListener("input", save);
    panel.addEventListener("toggle", save, true);
    $("options-reset").addEventListener("click", function () {
      Array.prototype.forEach.call(panel.querySelectorAll("input[type=file]"), function (el) {
        el.value = "";
      });
      apply(defaults);
      save();
    });
    return save;
  }

  // --- upload form -------------------------------------------------------
  function setupUpload(form) {
    var input = $("file-input");
    var dropzone = $("dropzone");
    var chosen = $("file-chosen");
    var errorBox = $("upload-error");
    var button = $("submit-button");
    var previewUrl = null;
    var optionsPanel = $("options-panel");
    var saveOptions = optionsPanel ? setupOptions(optionsPanel) : function () {};

    function showError(text) {
      errorBox.textContent = text;
      errorBox.hidden = false;
      errorBox.scrollIntoView({ block: "nearest" });
    }

    var price = Number(form.getAttribute("data-price")) || 0;
    var maxItems = Number(form.getAttribute("data-max-items")) || 100;

    function chosenFiles() {
      return Array.prototype.slice.call(input.files || []);
    }

    function describeChoice() {
      chosen.textContent = "";
      errorBox.hidden = true;
      if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
      var files = chosenFiles();
      var many = files.length > 1;
      button.textContent = many ? "Remove " + files.length + " backgrounds" : "Remove background";
      $("price-total").textContent = many
        ? files.length * price + " credits (" + files.length + " × " + price + ")"
        : price + " credits";
      if (many) {
        var total = files.reduce(function (sum, f) { return sum + f.size; }, 0);
        var summary = document.createElement("span");
        summary.textContent = files.length + " photos (" + formatBytes(total) + "): " +
          files.map(function (f) { return f.name; }).join(", ");
        chosen.appendChild(summary);
        return;
      }
      var file = files[0];
      if (!file) return;
      if (/^image\//.test(file.type)) {
        previewUrl = URL.createObjectURL(file);
        var img = document.createElement("img");
        img.src = previewUrl;
        img.alt = "";
        chosen.appendChild(img);
      }
      var label = document.createElement("span");
      label.textContent = file.name + " (" + formatBytes(file.size) + ")";
      chosen.appendChild(label);
    }

    input.addEventListener("change", describeChoice);

    ["dragenter", "dragover"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) {
        event.preventDefault();
        dropzone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) {
        event.preventDefault();
        dropzone.classList.remove("dragging");
      });
    });
    dropzone.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        describeChoice();
      }
    });

    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (event) { event.preventDefault(); });
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.hidden = true;
      var files = chosenFiles();
      var file = files[0];
      if (!file) {
        showError("Choose a photo first: drop it on the box or use the file picker.");
        input.focus();
        return;
      }
      if (files.length > maxItems) {
        showError("Choose at most " + maxItems + " photos at once; you chose " + files.length + ".");
        return;
      }
      saveOptions();
      if (files.length > 1) {
        button.disabled = true;
        button.textContent = "Uploading…";
        submitBatch(form, files, function () {
          button.disabled = false;
          button.textContent = "Remove " + files.length + " backgrounds";
        }, showError);
        return;
      }
      $("batch-panel").hidden = true;
      button.disabled = true;
      button.textContent = "Uploading…";
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) {
          return response.json().then(
            function (body) { return { ok: response.ok, body: body }; },
            function () {
              var text = response.status === 403
                ? "Your session has expired; reload the page and try again."
                : "The server could not take the upload (status " + response.status + ").";
              return { ok: false, body: { error: text } };
            }
          );
        })
        .then(function (reply) {
          button.disabled = false;
          button.textContent = "Remove background";
          if (!reply.ok) {
            showError(sentence(reply.body.error) + " Nothing was charged.");
            return;
          }
          resetPanel(file.name);
          render(reply.body);
          $("job-panel").scrollIntoView({ behavior: "smooth", block: "start" });
          poll(reply.body.status_url);
        })
        .catch(function () {
          button.disabled = false;
          button.textContent = "Remove background";
          showError("The upload did not reach the server; check your connection and try again. Nothing was charged.");
        });
    });
  }

  // --- dashboard: copy the new key --------------------------------------
  function setupCopy(button) {
    button.addEventListener("click", function () {
      var target = $(button.getAttribute("data-copy-target"));
      var text = target.textContent.trim();
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
      } else {
        selectText(target);
        try { document.execCommand("copy"); done(); } catch (e) { /* selected for Ctrl+C */ }
      }
    });
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function setupConfirm(form) {
    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (event) { event.preventDefault(); });
    });

    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = $("upload-form");
    if (form) setupUpload(form);
    var panel = $("job-panel");
    if (panel && panel.getAttribute("data-status-url")) poll(panel.getAttribute("data-status-url"));
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy-target]"), setupCopy);
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), setupConfirm);
  });
})();
