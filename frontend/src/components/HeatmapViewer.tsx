import { useId, useState } from 'react'

interface Props {
  imageSrc: string | null
  heatmapSrc: string | null
  /** "center_square": the model saw the centre square (CSS object-fit: cover); "none": squashed. */
  crop: string
  predictionName?: string
  /** 0..100 */
  opacity: number
  onOpacity: (v: number) => void
}

/** The uploaded image with the model's heatmap stacked on top (CSS), plus an opacity slider. */
export function HeatmapViewer({ imageSrc, heatmapSrc, crop, predictionName, opacity, onOpacity }: Props) {
  const [imgFailed, setImgFailed] = useState(false)
  const sliderId = useId()
  const fit = crop === 'none' ? 'fill' : 'cover'
  return (
    <figure className="heatmap-viewer">
      <div className="heatmap-pair">
      {imageSrc && !imgFailed && heatmapSrc && (
        <div className="heatmap-stack print-only print-plain">
          <img className="heatmap-base" src={imageSrc} alt="" style={{ objectFit: fit }} />
        </div>
      )}
      <div className="heatmap-stack">
        {imageSrc && !imgFailed ? (
          <img
            className="heatmap-base"
            src={imageSrc}
            alt="The uploaded lesion image"
            style={{ objectFit: fit }}
            onError={() => setImgFailed(true)}
          />
        ) : (
          <div className="heatmap-base heatmap-noimg">
            <span>This image format cannot be shown in the browser</span>
          </div>
        )}
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
            Warm colours show the areas that most influenced the model's answer
            {predictionName ? <> (“{predictionName}”)</> : null}. This is not an outline of the
            lesion and not proof of a diagnosis.
            {crop !== 'none' && ' The model looks at the centre square of the image.'}
          </figcaption>
        </>
      ) : (
        <figcaption>No heatmap was returned for this image.</figcaption>
      )}
    </figure>
  )
}
