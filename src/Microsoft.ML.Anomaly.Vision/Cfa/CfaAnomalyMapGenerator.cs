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

    /// <summary>
    /// Writes the H×W anomaly maps of <paramref name="images"/> images and their scores: the nearest distances of all
    /// their patches in one search (its work items balance across the threads), then the images' maps in parallel.
    /// </summary>
    /// <param name="features">The images' target-oriented features, patch-major per image [images · gridH·gridW, channels].</param>
    /// <param name="images">Number of images.</param>
    /// <param name="scores">Receives one score per image.</param>
    /// <param name="maps">Receives images × height×width values.</param>
    public unsafe void Generate(ReadOnlySpan<float> features, int images, Span<float> scores, Span<float> maps)
    {
        int patches = _gridHeight * _gridWidth, pixels = _height * _width;
        var distances = new float[images * patches * _neighbors];
        _scorer.NearestSquaredDistances(features[..(images * patches * _channels)], images * patches, _neighbors, distances);
        var imageScores = new float[images];
        fixed (float* mapStart = maps[..(images * pixels)])
        {
            nint mapAddress = (nint)mapStart;
            Parallel.For(0, images, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, image =>
            {
                var patchScores = new float[patches];
                AnomalyMapMath.SoftminNearest(distances.AsSpan(image * patches * _neighbors, patches * _neighbors), patches, _neighbors, patchScores);
                var upsampled = new float[pixels];
                AnomalyMapMath.BilinearResize(patchScores, _gridHeight, _gridWidth, upsampled, _height, _width, alignCorners: false);
                var map = new Span<float>((float*)mapAddress + (long)image * pixels, pixels);
                _blur.Apply(upsampled, _height, _width, map);
                imageScores[image] = System.Numerics.Tensors.TensorPrimitives.Max(map);
            });
        }
        imageScores.CopyTo(scores);
    }
}
