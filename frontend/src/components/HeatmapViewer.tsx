import { useId, useState } from 'react'

interface Props {
  /** The uploaded image as the browser can show it; null when it cannot (DICOM). */
  imageSrc: string | null
  /** Why there is no image to show, e.g. "This DICOM file"; used in the caption. */
  noImageReason?: string
  heatmapSrc: string | null
  /** "center_square": the model saw the centre square (CSS object-fit: cover); "none": squashed. */
  crop: string
  predictionName?: string
  /** 0..100 */
  opacity: number
  onOpacity: (v: number) => void
}

/**
 * The uploaded image with the model's heatmap stacked on top (CSS), plus an opacity slider. When
 * the browser cannot show the image (DICOM, some TIFFs), the heatmap is shown on its own, at full
 * strength, so the user still sees where the model looked.
 */
export function HeatmapViewer({ imageSrc, noImageReason, heatmapSrc, crop, predictionName, opacity, onOpacity }: Props) {
  const [imgFailed, setImgFailed] = useState(false)
  const sliderId = useId()
  const fit = crop === 'none' ? 'fill' : 'cover'
  const hasImage = imageSrc !== null && !imgFailed
  const looked = (
    <>
      Warm colours show the areas that most influenced the model's answer
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
            <div className="heatmap-stack heatmap-alone-stack">
              <img
                className="heatmap-base heatmap-alone"
                src={heatmapSrc}
                alt="Heatmap of the areas the model used; the image itself cannot be shown in the browser"
                data-testid="heatmap-alone"
              />
            </div>
            <figcaption data-testid="heatmap-alone-caption">
              {what} cannot be shown in the browser, so the heatmap is shown on its own
              {crop !== 'none' ? ' (it covers the centre square of the image, the part the model saw)' : ''}. {looked}
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
          <div className="heatmap-stack print-only print-plain">
            <img className="heatmap-base" src={imageSrc} alt="" style={{ objectFit: fit }} />
          </div>
        )}
        <div className="heatmap-stack">
          <img
            className="heatmap-base"
            src={imageSrc}
            alt="The uploaded lesion image"
            style={{ objectFit: fit }}
            onError={() => setImgFailed(true)}
          />
          {heatmapSrc && (
            <img
              className="heatmap-top"
              src={heatmapSrc}
              alt=""
              data-testid="heatmap-overlay"
              style={{ opacity: opacity / 100 }}
            />
          )}
        </div>
      </div>
      {heatmapSrc ? (
        <>
          <div className="slider-row no-print">
            <label htmlFor={sliderId}>Heatmap opacity</label>
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
          <figcaption>
            {looked}
            {crop !== 'none' && ' The model looks at the centre square of the image.'}
          </figcaption>
        </>
      ) : (
        <figcaption>No heatmap was returned for this image.</figcaption>
      )}
    </figure>
  )
}
