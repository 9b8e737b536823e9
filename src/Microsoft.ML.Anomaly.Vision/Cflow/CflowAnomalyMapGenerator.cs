using System.Numerics.Tensors;

namespace Microsoft.ML.Anomaly.Vision.Cflow;

/// <summary>
/// CFlow's anomaly map, as anomalib's CFlow builds it: each layer's log-likelihoods are shifted by their
/// maximum and exponentiated into probabilities in (0, 1], upsampled bilinearly (corners aligned) to the
/// input size and summed over layers; the map is the sum's maximum minus the sum, and the image score the
/// map's maximum. anomalib takes the maxima over a whole batch; here they are taken over one image, so
/// an image's score does not depend on the images batched with it.
/// </summary>
internal sealed class CflowAnomalyMapGenerator
{
    private readonly IReadOnlyList<(int Height, int Width)> _grids;
    private readonly int _height;
    private readonly int _width;

    public CflowAnomalyMapGenerator(IReadOnlyList<(int Height, int Width)> grids, int height, int width)
    {
        _grids = grids;
        _height = height;
        _width = width;
    }

    /// <summary>Writes one image's height×width map from its per-layer log-likelihoods and returns its score.</summary>
    /// <param name="logLikelihoods">One array per layer: batch × grid log-likelihoods per dimension.</param>
    /// <param name="image">Index of the image in the batch.</param>
    /// <param name="map">Receives height×width values.</param>
    public float Generate(IReadOnlyList<float[]> logLikelihoods, int image, Span<float> map)
    {
        int pixels = _height * _width;
        var sum = map[..pixels];
        sum.Clear();
        var upsampled = new float[pixels];
        for (int layer = 0; layer < _grids.Count; layer++)
        {
            var (h, w) = _grids[layer];
            var values = logLikelihoods[layer].AsSpan(image * h * w, h * w);
            var probabilities = new float[h * w];
            TensorPrimitives.Subtract(values, TensorPrimitives.Max(values), probabilities);
            TensorPrimitives.Exp(probabilities, probabilities);
            AnomalyMapMath.BilinearResize(probabilities, h, w, upsampled, _height, _width, alignCorners: true);
            TensorPrimitives.Add(sum, upsampled, sum);
        }
        float top = TensorPrimitives.Max(sum);
        TensorPrimitives.Subtract(top, sum, sum);
        return TensorPrimitives.Max(sum);
    }
}
