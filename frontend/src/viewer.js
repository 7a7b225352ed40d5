// The diagnostic viewer: Cornerstone3D stack viewports on our own DICOMweb (WADO-RS metadata and
// frames, decoded in a web worker by Cornerstone's WebAssembly codecs), with its window/level,
// pan, zoom, length and stack-scroll tools, and the AI heatmap drawn as an overlay that follows
// the camera.
import { Enums, RenderingEngine, init as coreInit, metaData, utilities } from "@cornerstonejs/core";
import { init as loaderInit, wadors } from "@cornerstonejs/dicom-image-loader";
import {
  LengthTool, PanTool, StackScrollTool, ToolGroupManager, WindowLevelTool, ZoomTool,
  Enums as ToolEnums, addTool, init as toolsInit,
} from "@cornerstonejs/tools";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const TOOLS = { wl: WindowLevelTool.toolName, pan: PanTool.toolName, zoom: ZoomTool.toolName, length: LengthTool.toolName };
const { MouseBindings } = ToolEnums;
let ready = null;
let engine = null;
let counter = 0;

function initCornerstone() {
  if (!ready) {
    ready = (async () => {
      await coreInit();
      loaderInit({ maxWebWorkers: Math.min(2, navigator.hardwareConcurrency || 1) });
      toolsInit();
      for (const tool of [WindowLevelTool, PanTool, ZoomTool, LengthTool, StackScrollTool]) addTool(tool);
      engine = new RenderingEngine("qoima");
    })();
  }
  return ready;
}

// WADO-RS metadata of one series, registered with the loader; image ids in the given SOP order.
async function imageIdsFor(studyUid, seriesUid, sopUids) {
  const base = `${location.origin}/dicomweb/studies/${studyUid}/series/${seriesUid}`;
  const response = await fetch(`${base}/metadata`, { headers: { Accept: "application/dicom+json" } });
  const bySop = new Map((await response.json()).map((m) => [m["00080018"]?.Value?.[0], m]));
  const imageIds = [];
  for (const sop of sopUids) {
    const meta = bySop.get(sop);
    if (!meta) continue;
    const frames = Number(meta["00280008"]?.Value?.[0] || 1);
    for (let frame = 1; frame <= frames; frame += 1) {
      const imageId = `wadors:${base}/instances/${sop}/frames/${frame}`;
      wadors.metaDataManager.add(imageId, meta);
      imageIds.push(imageId);
    }
  }
  return imageIds;
}

export class Viewer {
  constructor({ label }) {
    counter += 1;
    this.id = `viewport-${counter}`;
    this.canvas = h("div", { class: "viewer-canvas", "data-testid": "viewer-canvas", oncontextmenu: (e) => e.preventDefault() });
    this.overlay = h("canvas", { class: "viewer-overlay" });
    this.info = h("div", { class: "viewer-info" });
    this.labelElement = h("div", { class: "viewer-label" }, label);
    this.element = h("div", { class: "viewer" }, this.labelElement, this.canvas, this.info);
    this.heatmapImage = null;
    this.showHeatmap = false;
    this.heatmapOpacity = 0.6;
    this.tool = "wl";
    this.viewport = null;
  }

  setLabel(text) { this.labelElement.textContent = text; }

  async enable() {
    await initCornerstone();
    if (this.viewport) return;
    engine.enableElement({ viewportId: this.id, type: Enums.ViewportType.STACK, element: this.canvas });
    this.viewport = engine.getViewport(this.id);
    this.canvas.append(this.overlay);
    this.toolGroup = ToolGroupManager.createToolGroup(`tools-${this.id}`);
    for (const name of [...Object.values(TOOLS), StackScrollTool.toolName]) this.toolGroup.addTool(name);
    this.toolGroup.addViewport(this.id, engine.id);
    this.toolGroup.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    this.toolGroup.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    this.toolGroup.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    this.setTool(this.tool);
    const redraw = () => this.drawOverlay();
    this.canvas.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
      this.canvas.dataset.rendered = "1";
      redraw();
    });
    this.canvas.addEventListener(Enums.Events.CAMERA_MODIFIED, redraw);
    this.canvas.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => {
      this.element.dispatchEvent(new CustomEvent("indexchange", { detail: this.viewport.getCurrentImageIdIndex() }));
    });
    new ResizeObserver(() => { engine.resize(true, false); redraw(); }).observe(this.canvas);
  }

  setTool(tool) {
    this.tool = tool;
    if (!this.toolGroup) return;
    for (const [key, name] of Object.entries(TOOLS)) {
      if (key === tool) continue;
      if (name === PanTool.toolName || name === ZoomTool.toolName) continue;  // keep their other buttons
      this.toolGroup.setToolPassive(name);
    }
    const primary = { bindings: [{ mouseButton: MouseBindings.Primary }] };
    if (tool === "pan") this.toolGroup.setToolActive(PanTool.toolName, { bindings: [...primary.bindings, { mouseButton: MouseBindings.Auxiliary }] });
    else if (tool === "zoom") this.toolGroup.setToolActive(ZoomTool.toolName, { bindings: [...primary.bindings, { mouseButton: MouseBindings.Secondary }] });
    else {
      this.toolGroup.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      this.toolGroup.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      this.toolGroup.setToolActive(TOOLS[tool], primary);
    }
  }

  // Show instances (in this order) of one series; multi-frame instances expand to their frames.
  async setStack(studyUid, seriesUid, sopUids, index = 0) {
    await this.enable();
    this.info.textContent = t("viewer.loading");
    const imageIds = await imageIdsFor(studyUid, seriesUid, sopUids);
    await this.viewport.setStack(imageIds, Math.min(index, imageIds.length - 1));
    this.viewport.render();
    return imageIds.length;
  }

  async setIndex(index) {
    if (!this.viewport) return;
    await this.viewport.setImageIdIndex(index);
  }

  setHeatmap(url) {
    this.heatmapImage = null;
    if (!url) { this.drawOverlay(); return Promise.resolve(false); }
    return new Promise((resolve) => {
      const image = new Image();
      image.onload = () => { this.heatmapImage = image; this.drawOverlay(); resolve(true); };
      image.onerror = () => resolve(false);
      image.src = url;
    });
  }

  toggleHeatmap(on) {
    this.showHeatmap = on;
    this.canvas.dataset.heatmap = on ? "on" : "off";
    this.drawOverlay();
  }

  reset() {
    if (!this.viewport) return;
    this.viewport.resetCamera();
    this.viewport.resetProperties();
    this.viewport.render();
  }

  // Window presets in modality values (Hounsfield units for CT): [center, width].
  setWindow(center, width) {
    if (!this.viewport) return;
    this.viewport.setProperties({ voiRange: utilities.windowLevel.toLowHighRange(width, center) });
    this.viewport.render();
  }

  invert() {
    if (!this.viewport) return;
    this.viewport.setProperties({ invert: !this.viewport.getProperties().invert });
    this.viewport.render();
  }

  draw() { this.drawOverlay(); }

  // The heatmap is an image of the same grid as the radiograph: place it where the viewport
  // shows the radiograph's corners, so it follows zoom and pan.
  drawOverlay() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth, height = this.canvas.clientHeight;
    if (this.overlay.width !== Math.round(width * ratio)) this.overlay.width = Math.round(width * ratio);
    if (this.overlay.height !== Math.round(height * ratio)) this.overlay.height = Math.round(height * ratio);
    const context = this.overlay.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    const imageId = this.viewport?.getCurrentImageId();
    if (!imageId) return;
    this.updateInfo(imageId);
    if (!this.showHeatmap || !this.heatmapImage) return;
    const plane = metaData.get("imagePlaneModule", imageId);
    if (!plane) return;
    const [x0, y0] = this.viewport.worldToCanvas(utilities.imageToWorldCoords(imageId, [0, 0]));
    const [x1, y1] = this.viewport.worldToCanvas(utilities.imageToWorldCoords(imageId, [plane.columns, plane.rows]));
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.globalAlpha = this.heatmapOpacity;
    context.drawImage(this.heatmapImage, Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    context.globalAlpha = 1;
  }

  updateInfo() {
    const { voiRange } = this.viewport.getProperties();
    if (!voiRange) return;
    const { windowWidth, windowCenter } = utilities.windowLevel.toWindowLevel(voiRange.lower, voiRange.upper);
    const index = this.viewport.getCurrentImageIdIndex() + 1;
    const total = this.viewport.getImageIds().length;
    this.info.textContent = `WL ${Math.round(windowCenter)} / WW ${Math.round(windowWidth)} · ${Math.round(this.viewport.getZoom() * 100)}%${total > 1 ? ` · ${index}/${total}` : ""}`;
  }
}
