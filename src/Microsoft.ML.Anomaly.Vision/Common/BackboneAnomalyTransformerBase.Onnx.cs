using Microsoft.ML.Anomaly.Vision.Export;
using Microsoft.ML.Model.OnnxConverter;

namespace Microsoft.ML.Anomaly.Vision;

public abstract partial class BackboneAnomalyTransformerBase
{
    /// <summary>
    /// Writes the fitted detector, whole, to one ONNX file: input <c>image</c> (batch × 3 × <see cref="InputHeight"/>
    /// × <see cref="InputWidth"/> float RGB values in 0–255; the ImageNet normalisation is inside the graph), outputs
    /// <c>Score</c> [batch] and, when the detector makes maps, <c>AnomalyMap</c> [batch, height, width], computed as
    /// the transformer computes them. The file is written beside the target first and then renamed over it, so a
    /// failed export leaves no partial file.
    /// </summary>
    /// <param name="path">The .onnx file to write (replaced when it exists).</param>
    /// <exception cref="NotSupportedException">The graph could not score exactly as the transformer does (the message says why).</exception>
    public void ExportToOnnx(string path) => DetectorOnnxExport.WriteFile(this, path);

    /// <summary>The backbone, for the export.</summary>
    internal OnnxBackbone BackboneForExport => Backbone;

    /// <summary>Writes the detector's head from the backbone's layer tensors; returns the score [N] and map [N, H, W] tensors (map null when none).</summary>
    internal abstract (string Score, string? Map) WriteOnnxHead(OnnxGraphBuilder graph, IReadOnlyList<string> layerMaps);

    private protected sealed override void SaveAsOnnx(OnnxContext ctx) => DetectorOnnxExport.WriteToContext(this, ctx);
}
