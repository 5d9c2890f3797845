/* Opened by a phone camera from a license's QR code: the code is in the fragment (#...), which
   the browser never sends to any server; the page sends it to the verify API itself. */
(function () {
  "use strict";
  var E = window.Etrust;
  var $ = E.$;

  function check() {
    var hash = window.location.hash;
    if (!hash || hash.length < 2) {
      $("v-empty").hidden = false;
      $("more").hidden = true;
      $("result").hidden = true;
      return;
    }
    $("v-empty").hidden = true;
    $("more").hidden = false;
    E.run(E.verifyCode(window.location.href, { channel: "citizen", useToken: false }));
  }

  window.addEventListener("hashchange", check);
  check();
})();
