import { useId, useState, type CSSProperties, type SyntheticEvent } from 'react'

interface Props {
  /** The uploaded image as the browser can show it; null when it cannot (DICOM). */
  imageSrc: string | null
  /** Why there is no image to show, e.g. "This DICOM file"; used in the caption. */
  noImageReason?: string
  /** What the image is, for its alt texts where several are shown (e.g. "visit 2 of 3,
   * 2021-05-06"); the default: the uploaded lesion image. */
  imageName?: string
  heatmapSrc: string | null
  /** "center_square": the answer comes from the centre square (outlined); "none": the whole image, squashed. */
  crop: string
  predictionName?: string
  /** 0..100 */
  opacity: number
  onOpacity: (v: number) => void
  /** The opacity slider's name; where two viewers are side by side, which image it is for
   * ("Heatmap opacity, left image"), so that the two sliders are told apart. */
  sliderLabel?: string
}

interface Size {
  w: number
  h: number
}

/** The centre square of a w x h frame, as CSS percentages of the frame (null for a square frame). */
export function centreSquare({ w, h }: Size): CSSProperties | null {
  if (!(w > 0 && h > 0) || Math.abs(w - h) < 1) return null
  const side = Math.min(w, h)
  return {
    left: `${((w - side) / 2 / w) * 100}%`,
    top: `${((h - side) / 2 / h) * 100}%`,
    width: `${(side / w) * 100}%`,
    height: `${(side / h) * 100}%`,
  }
}

/** The alt texts of the image, of the heatmap over it, and of the heatmap shown alone when the
 * browser cannot show the image (`imageName`: see `Props`). */
export function heatmapViewerAlts(imageName?: string, predictionName?: string): { image: string; heatmap: string; alone: string } {
  return {
    image: imageName ? `Image of ${imageName}` : 'The uploaded lesion image',
    alone: `Heatmap of the areas the model used${imageName ? `, ${imageName}` : ''}; the image itself cannot be shown in the browser`,
    heatmap: `Heatmap over the image${imageName ? ` of ${imageName}` : ''}: warm colours mark the areas that most influenced the model's answer${predictionName ? ` (${predictionName})` : ''}`,
  }
}

/**
 * The whole uploaded image (its own aspect) with the model's heatmap stretched over it (CSS), plus an
 * opacity slider. The heatmap covers the whole image; when the answer itself came from the centre square
 * only, that square is outlined. When the browser cannot show the image (DICOM, some TIFFs), the heatmap is
 * shown on its own, at full strength, so the user still sees where the model looked.
 */
export function HeatmapViewer({ imageSrc, noImageReason, imageName, heatmapSrc, crop, predictionName, opacity, onOpacity, sliderLabel = 'Heatmap opacity' }: Props) {
  const [imgFailed, setImgFailed] = useState(false)
  const [size, setSize] = useState<Size | null>(null)
  const sliderId = useId()
  const hasImage = imageSrc !== null && !imgFailed
  const aspect: CSSProperties = size ? { aspectRatio: `${size.w} / ${size.h}` } : {}
  const onSize = (e: SyntheticEvent<HTMLImageElement>) =>
    setSize({ w: e.currentTarget.naturalWidth, h: e.currentTarget.naturalHeight })
  const square = crop !== 'none' && size ? centreSquare(size) : null
  const alts = heatmapViewerAlts(imageName, predictionName)
  const looked = (
    <>
      Warm colours show the areas of the whole image that most influenced the model's answer
      {predictionName ? <> (“{predictionName}”)</> : null}. This is not an outline of the lesion and not proof of a
      diagnosis.
    </>
  )
  if (!hasImage) {
    const what = noImageReason ?? 'This image'
    return (
      <figure className="heatmap-viewer">
        {heatmapSrc ? (
          <>
            <div className="heatmap-stack heatmap-alone-stack" style={aspect}>
              <img
                className="heatmap-base heatmap-alone"
                src={heatmapSrc}
                onLoad={onSize}
                alt={alts.alone}
                data-testid="heatmap-alone"
              />
            </div>
            <figcaption data-testid="heatmap-alone-caption">
              {what} cannot be shown in the browser, so the heatmap is shown on its own (it covers the whole
              image). {looked}
            </figcaption>
          </>
        ) : (
          <>
            <div className="heatmap-stack heatmap-noimg-stack">
              <div className="heatmap-base heatmap-noimg">
                <span>{what} cannot be shown in the browser</span>
              </div>
            </div>
            <figcaption>No heatmap was returned for this image.</figcaption>
          </>
        )}
      </figure>
    )
  }
  return (
    <figure className="heatmap-viewer">
      <div className="heatmap-pair">
        {heatmapSrc && (
          <div className="heatmap-stack print-only print-plain" style={aspect}>
            <img className="heatmap-base" src={imageSrc} alt="" />
          </div>
        )}
        <div className="heatmap-stack" style={aspect} data-testid="heatmap-stack">
          <img
            className="heatmap-base"
            src={imageSrc}
            alt={alts.image}
            onLoad={onSize}
            onError={() => setImgFailed(true)}
          />
          {heatmapSrc && (
            <img
              className="heatmap-top"
              src={heatmapSrc}
              alt={alts.heatmap}
              data-testid="heatmap-overlay"
              style={{ opacity: opacity / 100 }}
            />
          )}
          {heatmapSrc && square && (
            <div
              className="heatmap-square"
              data-testid="classified-square"
              aria-hidden="true"
              style={{ position: 'absolute', ...square, border: '2px dashed rgba(255, 255, 255, 0.85)', boxSizing: 'border-box', pointerEvents: 'none' }}
            />
          )}
        </div>
      </div>
      {heatmapSrc ? (
        <>
          <div className="slider-row no-print">
            <label htmlFor={sliderId}>{sliderLabel}</label>
            <input
              id={sliderId}
              type="range"
              min={0}
              max={100}
              step={5}
              value={opacity}
              onChange={(e) => onOpacity(Number(e.target.value))}
              data-testid="opacity-slider"
              aria-valuetext={`${opacity}%`}
            />
            <output htmlFor={sliderId}>{opacity}%</output>
          </div>
          <figcaption data-testid="heatmap-caption">
            {looked}
            {square
              ? ' The answer itself comes from the centre square of the image (dashed outline); the heatmap shows the same class over the whole image.'
              : null}
          </figcaption>
        </>
      ) : (
        <figcaption>No heatmap was returned for this image.</figcaption>
      )}
    </figure>
  )
}
