using Anomaly.Vision.Training;

namespace Microsoft.ML.Anomaly.Vision.Cfa;

/// <summary>
/// Turns one image's target-oriented features into CFA's anomaly map and score, as anomalib's CFA
/// anomaly-map generator does: squared distances to the memory bank, the k nearest, softmin-weighted
/// nearest distance per patch, bilinear upsampling to the input size, Gaussian blur (sigma 4);
/// the image score is the map's maximum.
/// </summary>
internal sealed class CfaAnomalyMapGenerator
{
    /// <summary>Standard deviation of the map's Gaussian blur, in pixels (anomalib's CFA).</summary>
    public const float BlurSigma = 4f;

    private readonly MemoryBankScorer _scorer;
    private readonly GaussianBlur _blur = new(BlurSigma);
    private readonly int _gridHeight;
    private readonly int _gridWidth;
    private readonly int _channels;
    private readonly int _neighbors;
    private readonly int _height;
    private readonly int _width;

    public CfaAnomalyMapGenerator(float[] memoryBank, int bankSize, int channels, int neighbors,
        int gridHeight, int gridWidth, int height, int width)
    {
        _scorer = new MemoryBankScorer(memoryBank, bankSize, channels);
        _channels = channels;
        _neighbors = neighbors;
        _gridHeight = gridHeight;
        _gridWidth = gridWidth;
        _height = height;
        _width = width;
    }

    /// <summary>Writes the H×W anomaly map of one image and returns its score.</summary>
    /// <param name="features">The image's target-oriented features, patch-major [gridH·gridW, channels].</param>
    /// <param name="map">Receives height×width values.</param>
    public float Generate(ReadOnlySpan<float> features, Span<float> map)
    {
        int patches = _gridHeight * _gridWidth;
        var distances = new float[patches * _neighbors];
        _scorer.NearestSquaredDistances(features[..(patches * _channels)], patches, _neighbors, distances);
        var patchScores = new float[patches];
        AnomalyMapMath.SoftminNearest(distances, patches, _neighbors, patchScores);
        var upsampled = new float[_height * _width];
        AnomalyMapMath.BilinearResize(patchScores, _gridHeight, _gridWidth, upsampled, _height, _width, alignCorners: false);
        _blur.Apply(upsampled, _height, _width, map);
        return System.Numerics.Tensors.TensorPrimitives.Max(map[..(_height * _width)]);
    }
}
