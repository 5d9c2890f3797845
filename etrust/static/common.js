/* The verify pages' shared part: calling POST /api/v1/verify, showing its answer, the camera.
   Everything from the server or the user goes into the page with textContent, never as HTML. */
(function () {
  "use strict";

  var VERIFY_URL = "/api/v1/verify";
  var TOKEN_KEY = "etrust.window.token";
  var VERDICT_ZH = { valid: "有效", invalid: "无效", unknown: "无法确认" };
  var KIND_ZH = {
    code: "证照二维码",
    presentation: "亮证码",
    image: "二维码图片",
    document: "签章文件",
  };
  var STATUS_ZH = {
    valid: "有效",
    revoked: "已吊销",
    suspended: "已暂停使用",
    superseded: "已被新版本取代",
    expired: "已过有效期",
    not_found: "证照库中没有这张证照",
    not_yet_valid: "尚未生效",
  };
  var SOURCE_ZH = { online: "证照库实时状态", "status-list": "状态列表" };
  var FORMAT_ZH = {
    ofd: "OFD 文件",
    pdf: "PDF 文件",
    esl: "电子印章文件",
    ses: "电子签章数据",
    cms: "CMS 签名数据",
  };

  function $(id) {
    return document.getElementById(id);
  }

  /** A new element with a class and a text (both optional); text only through textContent. */
  function el(tag, className, text, id) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (id) node.id = id;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function text(value) {
    return typeof value === "string" || typeof value === "number" ? String(value) : "";
  }

  // ---- the clerk's token (window page): kept for this tab only --------------------------------
  function getToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function setToken(token) {
    try {
      if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* storage refused (private mode): the page still works, recorded as public */
    }
  }

  function authHeaders(useToken) {
    var headers = {};
    var token = useToken ? getToken() : "";
    if (token) headers.Authorization = "Bearer " + token;
    return headers;
  }

  // ---- requests -----------------------------------------------------------------------------
  /** The problem of a failed answer, in plain Chinese: {title, detail}. */
  function problemOf(resp, data) {
    var detail = "";
    var title = "";
    if (data && typeof data === "object") {
      detail = text(data.detail);
      title = text(data.title_zh);
    }
    if (!detail) detail = "服务器返回 " + resp.status + (resp.statusText ? " " + resp.statusText : "");
    if (resp.status === 413) title = "上传的文件过大";
    if (resp.status === 401) title = "未授权：令牌无效或已失效，请重新登录";
    if (resp.status === 403) title = "无权进行此操作";
    if (resp.status === 429) title = "请求过于频繁，请稍后再试";
    if (resp.status >= 500 && !title) title = "服务器暂时无法处理，请稍后再试";
    if (!title) title = "请求未能完成";
    return { status: resp.status, code: data && text(data.code), title: title, detail: detail };
  }

  /** fetch with JSON back: {answer} or {error: {title, detail}}; never throws. */
  function request(url, options) {
    options.cache = "no-store";
    options.credentials = "same-origin";
    options.referrerPolicy = "no-referrer";
    return fetch(url, options).then(
      function (resp) {
        return resp.text().then(function (body) {
          var data = null;
          try {
            data = body ? JSON.parse(body) : null;
          } catch (e) {
            data = null;
          }
          if (!resp.ok || !data || typeof data !== "object") {
            return { error: problemOf(resp, data) };
          }
          return { answer: data };
        });
      },
      function () {
        return { error: { title: "无法连接服务器", detail: "请检查网络连接后重试" } };
      }
    );
  }

  function verifyCode(code, options) {
    var body = { code: code, channel: options.channel };
    if (options.holderCode) body.holder_code = options.holderCode;
    var headers = authHeaders(options.useToken);
    headers["Content-Type"] = "application/json";
    return request(VERIFY_URL, { method: "POST", headers: headers, body: JSON.stringify(body) });
  }

  function verifyFile(file, options) {
    var form = new FormData();
    form.append("file", file, file.name || "upload");
    form.append("channel", options.channel);
    if (options.holderCode) form.append("holder_code", options.holderCode);
    return request(VERIFY_URL, { method: "POST", headers: authHeaders(options.useToken), body: form });
  }

  // ---- showing an answer ----------------------------------------------------------------------
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function formatTime(date) {
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds())
    );
  }

  function ago(seconds) {
    if (typeof seconds !== "number" || seconds < 60) return "刚刚";
    if (seconds < 3600) return Math.floor(seconds / 60) + " 分钟前";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " 小时前";
    return Math.floor(seconds / 86400) + " 天前";
  }

  function row(list, label, value, id) {
    if (!value) return;
    var wrap = el("div", "field");
    wrap.appendChild(el("dt", "", label));
    wrap.appendChild(el("dd", "", value, id));
    list.appendChild(wrap);
  }

  function licenseFields(license) {
    var list = el("dl", "fields", null, "fields");
    var validTo = license.valid_to ? text(license.valid_to) : "长期";
    row(list, "持证人", text(license.holder_name), "field-holder");
    row(list, "发证机关", text(license.issuer) || text(license.issuer_code), "field-issuer");
    if (license.valid_from) {
      row(list, "有效期", " 至 ", "field-validity");
      var validity = list.lastChild.lastChild;  // dates are not broken at their hyphens
      validity.insertBefore(el("span", "nowrap", text(license.valid_from)), validity.firstChild);
      validity.appendChild(el("span", "nowrap", validTo));
    }
    row(list, "签发日期", text(license.issue_date), "field-issued");
    row(list, "证照编号", text(license.identifier), "field-identifier");
    return list;
  }

  function statusLines(section, status) {
    var name = STATUS_ZH[status.status] || text(status.status);
    section.appendChild(el("p", "status", "证照状态：" + name, "status"));
    var when = "";
    var asOf = status.as_of ? new Date(status.as_of) : null;
    if (asOf && !isNaN(asOf.getTime())) when = formatTime(asOf);
    var source = SOURCE_ZH[status.source] || text(status.source);
    var fresh = "状态更新于 " + (when || "未知时间") + "（" + ago(status.age_seconds) +
      (source ? "，" + source : "") + "）";
    var line = el("p", "fresh", fresh, "freshness");
    if (typeof status.age_seconds === "number" && status.age_seconds > 86400) {
      line.className += " stale";
    }
    section.appendChild(line);
  }

  function documentLines(section, report) {
    if (!report || typeof report !== "object") return;
    var list = el("dl", "fields", null, "document-fields");
    if (report.format) row(list, "文件类型", FORMAT_ZH[report.format] || text(report.format));
    var assessment = report.assessment || {};
    row(list, "完整性", text(assessment.integrity_zh), "integrity");
    row(list, "可信性", text(assessment.trust_zh), "trust");
    if (list.firstChild) section.appendChild(list);
  }

  var counter = 0;

  /** Shows an answer of /api/v1/verify in ``section``. */
  function showAnswer(section, answer) {
    var verdict = VERDICT_ZH[answer.verdict] ? answer.verdict : "unknown";
    clear(section);
    counter += 1;
    section.hidden = false;
    section.className = "result result-" + verdict;
    section.setAttribute("data-count", String(counter));
    section.setAttribute("data-verdict", verdict);
    section.setAttribute("data-reason", text(answer.reason));
    // The banner's words are ours, so they always match its colour.
    var banner = el("div", "verdict verdict-" + verdict, VERDICT_ZH[verdict], "verdict");
    section.appendChild(banner);
    section.appendChild(el("p", "reason", text(answer.message_zh) || text(answer.reason), "reason"));
    if (answer.holder_match === true || answer.holder_match === false) {
      var match = answer.holder_match;
      section.appendChild(
        el("p", "holder " + (match ? "holder-yes" : "holder-no"),
          "持证人核对：" + (match ? "一致" : "不一致"), "holder-match")
      );
    }
    if (answer.license && typeof answer.license === "object" && answer.license.identifier) {
      section.appendChild(licenseFields(answer.license));
    }
    if (answer.status && typeof answer.status === "object") statusLines(section, answer.status);
    if (answer.kind === "document") documentLines(section, answer.report);
    var kind = KIND_ZH[answer.kind] || "";
    section.appendChild(
      el("p", "stamp", (kind ? "核验对象：" + kind + " · " : "") + "第 " + counter + " 次核验 · " +
        formatTime(new Date()), "stamp")
    );
  }

  /** Shows a failed request: a generic 请求失败 with the problem's words. */
  function showError(section, problem) {
    clear(section);
    counter += 1;
    section.hidden = false;
    section.className = "result result-error";
    section.setAttribute("data-count", String(counter));
    section.setAttribute("data-verdict", "error");
    section.setAttribute("data-reason", text(problem.code));
    section.appendChild(el("div", "verdict verdict-error", "请求失败", "verdict"));
    section.appendChild(el("p", "reason", problem.title || "请求未能完成", "reason"));
    if (problem.detail) section.appendChild(el("p", "detail", "详情：" + problem.detail, "detail"));
    section.appendChild(el("p", "stamp", "第 " + counter + " 次核验 · " + formatTime(new Date()), "stamp"));
  }

  /** Runs a verification (a promise of {answer} or {error}) with the busy line and the result;
      only the newest of overlapping requests is shown. */
  var latest = 0;
  function run(promise, after) {
    var mine = ++latest;
    var busy = $("busy");
    var section = $("result");
    if (busy) busy.hidden = false;
    return promise.then(function (outcome) {
      if (mine !== latest) return;
      if (busy) busy.hidden = true;
      if (outcome.answer) showAnswer(section, outcome.answer);
      else showError(section, outcome.error);
      if (after) after(outcome);
    });
  }

  // ---- uploads and the camera -----------------------------------------------------------------
  function wireUploads(verify) {
    ["image-file", "document-file"].forEach(function (id) {
      var input = $(id);
      if (!input) return;
      input.addEventListener("change", function () {
        var file = input.files && input.files[0];
        if (!file) return;
        verify(file, id).then(function () {
          input.value = "";
        });
      });
    });
  }

  /** The camera button, shown only where BarcodeDetector reads QR codes and a camera exists. */
  function wireCamera(onText) {
    var box = $("camera-box");
    var button = $("camera-button");
    var video = $("camera-video");
    var note = $("camera-note");
    if (!box || !button || !video) return;
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices ||
        !navigator.mediaDevices.getUserMedia) {
      box.hidden = true;
      return;
    }
    var formats = window.BarcodeDetector.getSupportedFormats
      ? window.BarcodeDetector.getSupportedFormats()
      : Promise.resolve(["qr_code"]);
    Promise.resolve(formats).then(
      function (list) {
        box.hidden = !(list && list.indexOf("qr_code") >= 0);
      },
      function () {
        box.hidden = true;
      }
    );
    var stream = null;
    var timer = null;
    var detector = null;

    function say(message) {
      if (!note) return;
      note.textContent = message;
      note.hidden = !message;
    }

    function stop() {
      if (timer) window.clearTimeout(timer);
      timer = null;
      if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
      stream = null;
      video.srcObject = null;
      video.hidden = true;
      button.textContent = "摄像头扫码";
    }

    function tick() {
      timer = null;
      if (!stream) return;
      var next = function () {
        if (stream) timer = window.setTimeout(tick, 200);
      };
      if (video.readyState < 2) return next();
      detector.detect(video).then(function (codes) {
        var found = codes && codes.length ? codes[0].rawValue : "";
        if (found) {
          stop();
          say("");
          onText(found);
        } else next();
      }, next);
    }

    button.addEventListener("click", function () {
      if (stream) {
        stop();
        return;
      }
      say("");
      try {
        detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      } catch (e) {
        say("此浏览器不能识别二维码，请上传照片");
        return;
      }
      navigator.mediaDevices
        .getUserMedia({ video: { facingMode: { ideal: "environment" } }, audio: false })
        .then(function (s) {
          stream = s;
          video.srcObject = s;
          video.hidden = false;
          button.textContent = "停止扫码";
          say("请将二维码对准摄像头");
          return video.play();
        })
        .then(function () {
          if (stream) tick();
        })
        .catch(function (err) {
          stop();
          var denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
          say(denied ? "无法打开摄像头：未获得摄像头权限" : "无法打开摄像头，请上传二维码照片");
        });
    });

    window.addEventListener("pagehide", stop);
  }

  window.Etrust = {
    $: $,
    el: el,
    getToken: getToken,
    setToken: setToken,
    request: request,
    verifyCode: verifyCode,
    verifyFile: verifyFile,
    showAnswer: showAnswer,
    showError: showError,
    run: run,
    wireUploads: wireUploads,
    wireCamera: wireCamera,
  };
})();
