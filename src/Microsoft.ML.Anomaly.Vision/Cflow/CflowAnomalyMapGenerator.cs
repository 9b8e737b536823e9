using System.Numerics.Tensors;

namespace Microsoft.ML.Anomaly.Vision.Cflow;

/// <summary>
/// CFlow's anomaly map, built as anomalib's CFlow builds it except for the normalisation constant: each layer's
/// log-likelihoods are shifted by a reference and exponentiated into probabilities, upsampled bilinearly
/// (corners aligned) to the input size and summed over layers; the map is the top of that sum minus the sum, and
/// the image score the map's maximum.
/// <para>
/// anomalib's reference is the maximum over the scored batch (the original CFlow-AD code: over the whole test
/// set), a constant shared by the images scored together, so an image that is unlikely everywhere scores high
/// but its score depends on its batch. Here the reference is fixed at training time
/// (<see cref="global::Anomaly.Vision.Training.CflowModel.LogLikelihoodReferences"/>): probabilities are
/// exp(min(log-likelihood − reference, 0)) in (0, 1] and the top is the layer count, so scores depend on the
/// image alone and keep its image-level evidence. A model saved without references (format version 1) keeps
/// the per-image normalisation it was made with: reference and top are the image's own maxima.
/// </para>
/// </summary>
internal sealed class CflowAnomalyMapGenerator
{
    private readonly IReadOnlyList<(int Height, int Width)> _grids;
    private readonly IReadOnlyList<float>? _references;
    private readonly int _height;
    private readonly int _width;

    /// <param name="grids">Each layer's grid.</param>
    /// <param name="references">Each layer's log-likelihood reference; null for the per-image normalisation.</param>
    /// <param name="height">Map height.</param>
    /// <param name="width">Map width.</param>
    public CflowAnomalyMapGenerator(IReadOnlyList<(int Height, int Width)> grids, IReadOnlyList<float>? references, int height, int width)
    {
        _grids = grids;
        _references = references;
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
            if (_references is null)
            {
                TensorPrimitives.Subtract(values, TensorPrimitives.Max(values), probabilities);
            }
            else
            {
                TensorPrimitives.Subtract(values, _references[layer], probabilities);
                TensorPrimitives.Min(probabilities, 0f, probabilities);
            }
            TensorPrimitives.Exp(probabilities, probabilities);
            AnomalyMapMath.BilinearResize(probabilities, h, w, upsampled, _height, _width, alignCorners: true);
            TensorPrimitives.Add(sum, upsampled, sum);
        }
        float top = _references is null ? TensorPrimitives.Max(sum) : _grids.Count;
        TensorPrimitives.Subtract(top, sum, sum);
        return TensorPrimitives.Max(sum);
    }
}
