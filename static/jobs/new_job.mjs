// New-job form: says how many chunks the job will have and its estimated CPU seconds
// against the quotas, asking the API (the form's data-preview-url) as the person types.
import { estimateText } from "./job_estimate.mjs";

const form = document.getElementById("job-form");
const output = document.getElementById("chunk-preview");
if (form && output && form.dataset.previewUrl) chunkPreviewSetUp(form, output);

function chunkPreviewSetUp(form, output) {
  const DELAY_MS = 300;
  const PREFIX = "params-";
  const csrfToken = form.elements.namedItem("csrfmiddlewaretoken").value;
  let timer = null;
  let latest = 0;
  let controller = null;

  function show(text, state) {
    output.textContent = text;
    output.className = "chunk-preview " + (state === "error" ? "errorlist" : "helptext");
  }

  // A picked file only gets its upload id when the form is sent, so the count can be
  // asked for only while the form carries a known id (a rerun's or a returned form's).
  function uploadIds() {
    const ids = {};
    for (const input of form.querySelectorAll(`input[type="file"][name^="${PREFIX}"]`)) {
      if (input.files && input.files.length) return null;
      const kept = form.querySelector(`input[type="hidden"][name="${input.name}-kept"]`);
      if (!kept || !kept.value) return null;
      ids[input.name] = kept.value;
    }
    return ids;
  }

  function payload() {
    const uploads = uploadIds();
    if (uploads === null) return null;
    const params = {};
    for (const el of form.elements) {
      if (!el.name || !el.name.startsWith(PREFIX) || el.disabled) continue;
      if (el.name in uploads || el.name.endsWith("-kept")) continue;
      const key = el.name.slice(PREFIX.length);
      if (el.type === "checkbox") params[key] = el.checked;
      else if (el.type === "radio") {
        if (el.checked) params[key] = el.value;
      } else if (el.tagName === "SELECT" && el.multiple) {
        params[key] = [...el.selectedOptions].map((option) => option.value);
      } else params[key] = el.value;
    }
    for (const [name, id] of Object.entries(uploads)) params[name.slice(PREFIX.length)] = id;
    const option = (name) => {
      const input = form.elements.namedItem(name);
      return input && input.value !== "" ? input.value : null;
    };
    return {
      kind: form.elements.namedItem("kind").value,
      params,
      parallelism: option("parallelism"),
      chunk_time_limit_s: option("chunk_time_limit_s"),
    };
  }

  function describe(htmlName, messages) {
    const message = Array.isArray(messages) ? messages[0] : String(messages);
    const label = htmlName && form.querySelector(`label[for="id_${htmlName}"]`);
    const name = label ? label.textContent.replace(/:\s*$/, "").trim() : "";
    return name ? `${name}: ${message}` : message;
  }

  function firstError(errors) {
    for (const [field, value] of Object.entries(errors || {})) {
      if (field === "params" && value && !Array.isArray(value) && typeof value === "object") {
        for (const [name, messages] of Object.entries(value)) {
          return describe(name === "__all__" ? null : PREFIX + name, messages);
        }
      }
      return describe(field, value);
    }
    return "These parameters are not valid.";
  }

  async function preview() {
    const body = payload();
    if (controller) controller.abort();
    const request = ++latest;
    if (body === null) {
      show("", "");
      return;
    }
    controller = new AbortController();
    try {
      const response = await fetch(form.dataset.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": csrfToken,
        },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      const answer = await response.json().catch(() => null);
      if (request !== latest) return;
      if (response.ok && answer) {
        show(estimateText(answer), "ok");
      } else if (response.status === 400 || response.status === 429) {
        show(firstError(answer), "error");
      } else {
        // Logged out, server trouble: sending the form will say what is wrong.
        show("", "");
      }
    } catch (error) {
      if (error.name !== "AbortError" && request === latest) show("", "");
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(preview, DELAY_MS);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  preview();
}
