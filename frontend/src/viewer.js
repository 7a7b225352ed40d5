// A diagnostic canvas viewer over our archive: window/level, zoom, pan, length, heatmap overlay.
// Pixels arrive as float32 after the modality LUT, so windowing happens here at full precision.
import { pixels } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

export class Viewer {
  constructor({ label }) {
    this.canvas = h("canvas", { class: "viewer-canvas", "data-testid": "viewer-canvas" });
    this.info = h("div", { class: "viewer-info" });
    this.element = h("div", { class: "viewer" }, h("div", { class: "viewer-label" }, label), this.canvas, this.info);
    this.tool = "wl";
    this.measurements = [];
    this.heatmapImage = null;
    this.showHeatmap = false;
    this.heatmapOpacity = 0.6;
    this.scale = 1; this.tx = 0; this.ty = 0;
    this.image = null;
    this.bindEvents();
    this.resizeObserver = new ResizeObserver(() => this.fit());
    this.resizeObserver.observe(this.canvas);
  }

  // keepView: scrolling through a stack keeps the reader's window, zoom and pan.
  async load(sopInstanceUid, { keepView = false } = {}) {
    this.info.textContent = t("viewer.loading");
    const frame = await pixels(sopInstanceUid);
    const sameSize = this.frame && this.frame.rows === frame.rows && this.frame.columns === frame.columns;
    const keep = keepView && sameSize;
    this.frame = frame;
    this.sopInstanceUid = sopInstanceUid;
    if (!keep) {
      this.center = frame.windowCenter;
      this.width = frame.windowWidth;
      this.inverted = frame.inverted;
      this.measurements = [];
    }
    this.offscreen = document.createElement("canvas");
    this.offscreen.width = frame.columns;
    this.offscreen.height = frame.rows;
    this.imageData = this.offscreen.getContext("2d").createImageData(frame.columns, frame.rows);
    this.applyWindow();
    if (!keep) this.fit();
  }

  setHeatmap(url) {
    this.heatmapImage = null;
    if (!url) { this.draw(); return Promise.resolve(false); }
    return new Promise((resolve) => {
      const image = new Image();
      image.onload = () => { this.heatmapImage = image; this.draw(); resolve(true); };
      image.onerror = () => resolve(false);
      image.src = url;
    });
  }

  toggleHeatmap(on) {
    this.showHeatmap = on;
    this.canvas.dataset.heatmap = on ? "on" : "off";
    this.draw();
  }

  applyWindow() {
    const { values } = this.frame;
    const out = this.imageData.data;
    const low = this.center - this.width / 2;
    const scale = 255 / Math.max(this.width, 1e-6);
    for (let i = 0, j = 0; i < values.length; i += 1, j += 4) {
      let v = (values[i] - low) * scale;
      v = v < 0 ? 0 : v > 255 ? 255 : v;
      if (this.inverted) v = 255 - v;
      out[j] = out[j + 1] = out[j + 2] = v;
      out[j + 3] = 255;
    }
    this.offscreen.getContext("2d").putImageData(this.imageData, 0, 0);
    this.draw();
  }

  fit() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth, height = this.canvas.clientHeight;
    if (!width || !height) return;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    if (this.frame) {
      this.scale = Math.min(this.canvas.width / this.frame.columns, this.canvas.height / this.frame.rows);
      this.tx = (this.canvas.width - this.frame.columns * this.scale) / 2;
      this.ty = (this.canvas.height - this.frame.rows * this.scale) / 2;
    }
    this.draw();
  }

  reset() {
    if (!this.frame) return;
    this.center = this.frame.windowCenter;
    this.width = this.frame.windowWidth;
    this.inverted = this.frame.inverted;
    this.measurements = [];
    this.applyWindow();
    this.fit();
  }

  invert() { this.inverted = !this.inverted; this.applyWindow(); }

  draw() {
    const context = this.canvas.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.frame) return;
    context.setTransform(this.scale, 0, 0, this.scale, this.tx, this.ty);
    context.imageSmoothingEnabled = this.scale < 4;
    context.drawImage(this.offscreen, 0, 0);
    if (this.showHeatmap && this.heatmapImage) {
      context.globalAlpha = this.heatmapOpacity;
      context.drawImage(this.heatmapImage, 0, 0, this.frame.columns, this.frame.rows);
      context.globalAlpha = 1;
    }
    context.setTransform(1, 0, 0, 1, 0, 0);
    for (const m of [...this.measurements, this.pending].filter(Boolean)) this.drawMeasurement(context, m);
    this.canvas.dataset.rendered = "1";
    this.info.textContent = `WL ${Math.round(this.center)} / WW ${Math.round(this.width)} · ${Math.round(this.scale * 100)}%`;
  }

  drawMeasurement(context, m) {
    const [x1, y1] = this.toScreen(m.x1, m.y1), [x2, y2] = this.toScreen(m.x2, m.y2);
    context.strokeStyle = "#ffd400"; context.fillStyle = "#ffd400";
    context.lineWidth = 2;
    context.beginPath(); context.moveTo(x1, y1); context.lineTo(x2, y2); context.stroke();
    const length = Math.hypot(m.x2 - m.x1, m.y2 - m.y1);
    const text = this.frame.spacingMm ? `${(length * this.frame.spacingMm).toFixed(1)} mm` : `${length.toFixed(1)} px`;
    context.font = `${14 * (window.devicePixelRatio || 1)}px sans-serif`;
    context.fillText(text, x2 + 6, y2 - 6);
    m.label = text;
  }

  toScreen(x, y) { return [x * this.scale + this.tx, y * this.scale + this.ty]; }

  toImage(event) {
    const rect = this.canvas.getBoundingClientRect();
    const ratio = this.canvas.width / rect.width;
    const sx = (event.clientX - rect.left) * ratio, sy = (event.clientY - rect.top) * ratio;
    return [(sx - this.tx) / this.scale, (sy - this.ty) / this.scale, sx, sy];
  }

  bindEvents() {
    let drag = null;
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.canvas.addEventListener("pointerdown", (event) => {
      if (!this.frame) return;
      this.canvas.setPointerCapture(event.pointerId);
      const [ix, iy, sx, sy] = this.toImage(event);
      const tool = event.button === 1 ? "pan" : event.button === 2 ? "zoom" : this.tool;
      drag = { tool, sx, sy, ix, iy, center: this.center, width: this.width, tx: this.tx, ty: this.ty, scale: this.scale };
      if (tool === "length") this.pending = { x1: ix, y1: iy, x2: ix, y2: iy };
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const [ix, iy, sx, sy] = this.toImage(event);
      const dx = sx - drag.sx, dy = sy - drag.sy;
      if (drag.tool === "wl") {
        const step = Math.max(drag.width / 256, 0.01);
        this.width = Math.max(1e-3, drag.width + dx * step);
        this.center = drag.center + dy * step;
        this.applyWindow();
      } else if (drag.tool === "pan") {
        this.tx = drag.tx + dx; this.ty = drag.ty + dy; this.draw();
      } else if (drag.tool === "zoom") {
        this.zoomAt(drag.sx, drag.sy, Math.exp(-dy / 200), drag);
      } else if (drag.tool === "length") {
        this.pending.x2 = ix; this.pending.y2 = iy; this.draw();
      }
    });
    const end = () => {
      if (drag && drag.tool === "length" && this.pending) {
        if (Math.hypot(this.pending.x2 - this.pending.x1, this.pending.y2 - this.pending.y1) > 1) this.measurements.push(this.pending);
        this.pending = null;
        this.draw();
        this.element.dispatchEvent(new CustomEvent("measured", { detail: this.measurements }));
      }
      drag = null;
    };
    this.canvas.addEventListener("pointerup", end);
    this.canvas.addEventListener("pointercancel", end);
    this.canvas.addEventListener("wheel", (event) => {
      if (!this.frame) return;
      event.preventDefault();
      const [, , sx, sy] = this.toImage(event);
      this.zoomAt(sx, sy, Math.exp(-event.deltaY / 500), this);
    }, { passive: false });
  }

  zoomAt(sx, sy, factor, from) {
    const scale = Math.min(Math.max(from.scale * factor, 0.05), 50);
    this.tx = sx - ((sx - from.tx) * scale) / from.scale;
    this.ty = sy - ((sy - from.ty) * scale) / from.scale;
    this.scale = scale;
    this.draw();
  }
}
