namespace Microsoft.ML.Anomaly.Vision.Dfm;

/// <summary>
/// DFM's anomaly map, as anomalib's DFM builds it for the feature-reconstruction score: the squared
/// reconstruction error summed over channels at each pooled position, upsampled bilinearly to the input size.
/// </summary>
internal sealed class DfmAnomalyMapGenerator
{
    private readonly int _pooledHeight;
    private readonly int _pooledWidth;
    private readonly int _height;
    private readonly int _width;

    public DfmAnomalyMapGenerator(int pooledHeight, int pooledWidth, int height, int width)
    {
        _pooledHeight = pooledHeight;
        _pooledWidth = pooledWidth;
        _height = height;
        _width = width;
    }

    /// <summary>Upsamples one image's per-position reconstruction error to the height×width map.</summary>
    public void Generate(ReadOnlySpan<float> reconstructionErrors, Span<float> map) =>
        AnomalyMapMath.BilinearResize(reconstructionErrors, _pooledHeight, _pooledWidth, map, _height, _width, alignCorners: false);
}
