/* Show the advice for each warning sign as soon as its box is ticked.
 *
 * The page carries one <template data-flag="key"> per warning sign, most urgent
 * first, and an empty aria-live region (#flag-advice). Ticking a box copies that
 * sign's advice into the region (screen readers announce it); unticking removes
 * it. No network, no third-party code; without scripts the server shows the
 * advice after submitting.
 */
(function () {
  "use strict";
  var region = document.getElementById("flag-advice");
  if (!region || !("content" in document.createElement("template"))) return;
  var templates = document.querySelectorAll("template[data-flag]");

  function box(key) {
    var boxes = document.querySelectorAll('input[type="checkbox"][name="red_flag"]');
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].value === key) return boxes[i];
    }
    return null;
  }

  function sync() {
    var last = null; // the last block kept, so new ones keep the most-urgent-first order
    for (var i = 0; i < templates.length; i++) {
      var key = templates[i].getAttribute("data-flag");
      var ticked = box(key);
      var shown = region.querySelector('[data-flag="' + key + '"]');
      if (ticked && ticked.checked && !shown) {
        shown = templates[i].content.firstElementChild.cloneNode(true);
        region.insertBefore(shown, last ? last.nextSibling : region.firstChild);
      } else if (shown && !(ticked && ticked.checked)) {
        region.removeChild(shown);
        shown = null;
      }
      if (shown) last = shown;
    }
    region.className = region.firstChild ? "live-advice shown" : "live-advice";
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.name === "red_flag") sync();
  });
  // after a form error the server already shows the advice at the top of the page
  if (!document.querySelector(".urgent")) sync();
})();
