// Calls to /api and /dicomweb. The reader's name travels in one header until auth exists (issue 6).
const USER_KEY = "qoima.user";

export function currentUser() {
  return localStorage.getItem(USER_KEY) || "";
}

export function setCurrentUser(name) {
  localStorage.setItem(USER_KEY, name.trim());
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const user = currentUser();
  if (user) headers["X-Qoima-User"] = encodeURIComponent(user);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3), from our DICOMweb service.
export function renderedUrl(study, series, instance, size) {
  const viewport = size ? `&viewport=${size},${size}` : "";
  return `/dicomweb/studies/${study}/series/${series}/instances/${instance}/rendered?accept=image/png${viewport}`;
}

export function thumbnailUrl(study, series, instance) {
  return `/dicomweb/studies/${study}/series/${series}/instances/${instance}/thumbnail?accept=image/jpeg&viewport=128,128`;
}
