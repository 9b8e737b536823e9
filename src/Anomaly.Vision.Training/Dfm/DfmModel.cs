using System.Buffers;
using System.Numerics.Tensors;

namespace Anomaly.Vision.Training;

/// <summary>
/// A fitted DFM (deep feature modelling) detector: PCA of pooled deep features, scored by feature reconstruction
/// error or by the negative log-likelihood of a Gaussian in the PCA space, as anomalib's DFM does. Scoring is plain
/// C# and thread-safe; it needs no TorchSharp.
/// </summary>
public sealed class DfmModel
{
    // Version history:
    //   1: first format.
    private const int FormatVersion = 1;
    private const int Signature = 0x4D464441; // "ADFM" little-endian

    private readonly Pca _pca;
    private readonly SingleClassGaussian? _gaussian;

    internal DfmModel(LayerShape layer, int poolingKernelSize, DfmScoreType scoreType, Pca pca, SingleClassGaussian? gaussian)
    {
        Layer = layer;
        PoolingKernelSize = poolingKernelSize;
        PooledHeight = DfmPooling.PooledSize(layer.Height, poolingKernelSize);
        PooledWidth = DfmPooling.PooledSize(layer.Width, poolingKernelSize);
        ScoreType = scoreType;
        _pca = pca;
        _gaussian = gaussian;
        if (pca.Dimension != FeatureDimension)
            throw new ArgumentException($"The PCA has {pca.Dimension} dimensions, the pooled map {FeatureDimension}.", nameof(pca));
        if ((scoreType == DfmScoreType.Nll) != (gaussian != null))
            throw new ArgumentException("An NLL model needs a Gaussian and an FRE model none.", nameof(gaussian));
        if (gaussian != null && gaussian.Dimension != pca.ComponentCount)
            throw new ArgumentException($"The Gaussian has {gaussian.Dimension} dimensions, the PCA {pca.ComponentCount} components.", nameof(gaussian));
    }

    /// <summary>Shape of the backbone layer map the model scores (one image).</summary>
    public LayerShape Layer { get; }

    /// <summary>Average-pooling window side (stride equal to it); 1 means no pooling.</summary>
    public int PoolingKernelSize { get; }

    /// <summary>Height of the pooled map, ⌊<see cref="LayerShape.Height"/> / <see cref="PoolingKernelSize"/>⌋; the FRE map's height.</summary>
    public int PooledHeight { get; }

    /// <summary>Width of the pooled map, ⌊<see cref="LayerShape.Width"/> / <see cref="PoolingKernelSize"/>⌋; the FRE map's width.</summary>
    public int PooledWidth { get; }

    /// <summary>Length of the feature vector: channels × <see cref="PooledHeight"/> × <see cref="PooledWidth"/>.</summary>
    public int FeatureDimension => Layer.Channels * PooledHeight * PooledWidth;

    /// <summary>Number of principal components kept.</summary>
    public int ComponentCount => _pca.ComponentCount;

    /// <summary>The score <see cref="Score"/> returns.</summary>
    public DfmScoreType ScoreType { get; }

    internal Pca Pca => _pca;

    internal SingleClassGaussian? Gaussian => _gaussian;

    /// <summary>
    /// Scores one image. For <see cref="DfmScoreType.Fre"/> the score is Σ (x − x̂)² over the pooled feature vector x
    /// and its PCA reconstruction x̂; for <see cref="DfmScoreType.Nll"/> it is the Gaussian negative log-likelihood of
    /// the PCA projection. When <paramref name="freMap"/> is not empty it receives the squared reconstruction error
    /// summed over channels at each pooled position (for an FRE model its values add up to the score).
    /// </summary>
    /// <param name="layerMap">The image's layer map, <see cref="Layer"/>.Size values in CHW order.</param>
    /// <param name="freMap">Empty, or <see cref="PooledHeight"/> × <see cref="PooledWidth"/> values to receive the FRE map.</param>
    /// <returns>The anomaly score (higher is more anomalous).</returns>
    /// <exception cref="ArgumentException">A span has the wrong length.</exception>
    public float Score(ReadOnlySpan<float> layerMap, Span<float> freMap)
    {
        if (layerMap.Length != Layer.Size)
            throw new ArgumentException($"The layer map has {layerMap.Length} values; a {Layer.Channels}×{Layer.Height}×{Layer.Width} map has {Layer.Size}.", nameof(layerMap));
        int positions = PooledHeight * PooledWidth;
        if (!freMap.IsEmpty && freMap.Length != positions)
            throw new ArgumentException($"The FRE map has {freMap.Length} values; it must be empty or hold {PooledHeight}×{PooledWidth} = {positions}.", nameof(freMap));

        int d = FeatureDimension, k = ComponentCount;
        float[] vector = ArrayPool<float>.Shared.Rent(d);
        float[] projection = ArrayPool<float>.Shared.Rent(2 * k + 1);
        try
        {
            var x = vector.AsSpan(0, d);
            var z = projection.AsSpan(0, k);
            DfmPooling.Pool(layerMap, Layer, PoolingKernelSize, x);
            TensorPrimitives.Subtract(x, _pca.Mean, x);
            _pca.Project(x, z);

            float score = 0;
            if (_gaussian != null)
                score = (float)_gaussian.Score(z, projection.AsSpan(k, k));
            if (ScoreType == DfmScoreType.Fre || !freMap.IsEmpty)
            {
                _pca.SubtractReconstruction(x, z);
                if (ScoreType == DfmScoreType.Fre)
                    score = TensorPrimitives.SumOfSquares(x);
                if (!freMap.IsEmpty)
                {
                    TensorPrimitives.Multiply(x, x, x);
                    x[..positions].CopyTo(freMap);
                    for (int c = 1; c < Layer.Channels; c++)
                        TensorPrimitives.Add(freMap, x.Slice(c * positions, positions), freMap);
                }
            }
            return score;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(vector);
            ArrayPool<float>.Shared.Return(projection);
        }
    }

    /// <summary>Writes the model in the format <see cref="Read"/> reads.</summary>
    /// <param name="writer">Destination.</param>
    public void Write(BinaryWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        // *** Binary format ***
        // int32     signature 0x4D464441 ("ADFM")
        // int32     format version (FormatVersion)
        // int32     score type (0 = FRE, 1 = NLL)
        // int32     layer channels C, height H, width W (all > 0)
        // int32     pooling kernel size k (1 ≤ k ≤ min(H, W))
        // int32     component count K (0 ≤ K ≤ D, where D = C·⌊H/k⌋·⌊W/k⌋; K ≥ 1 for NLL)
        // float32[D]    PCA mean
        // float32[K·D]  PCA components, component-major
        // NLL only:
        //   float32[K]    Gaussian mean
        //   float32[K]    Gaussian singular values S (> 0)
        //   float32[K·K]  Gaussian left singular vectors U, column j of U stored as row j
        writer.Write(Signature);
        writer.Write(FormatVersion);
        writer.Write((int)ScoreType);
        writer.Write(Layer.Channels);
        writer.Write(Layer.Height);
        writer.Write(Layer.Width);
        writer.Write(PoolingKernelSize);
        writer.Write(ComponentCount);
        WriteFloats(writer, _pca.Mean);
        WriteFloats(writer, _pca.Components);
        if (_gaussian != null)
        {
            WriteFloats(writer, _gaussian.Mean);
            WriteFloats(writer, _gaussian.Sigma);
            WriteFloats(writer, _gaussian.Basis);
        }
    }

    /// <summary>Reads a model written by <see cref="Write"/>.</summary>
    /// <param name="reader">Source.</param>
    /// <returns>The model.</returns>
    /// <exception cref="FormatException">The data is not a DFM model, is from a newer version, is truncated or holds an invalid value (the message names the field).</exception>
    public static DfmModel Read(BinaryReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        try
        {
            // *** Binary format ***
            // int32     signature 0x4D464441 ("ADFM")
            // int32     format version (FormatVersion)
            // int32     score type (0 = FRE, 1 = NLL)
            // int32     layer channels C, height H, width W (all > 0)
            // int32     pooling kernel size k (1 ≤ k ≤ min(H, W))
            // int32     component count K (0 ≤ K ≤ D, where D = C·⌊H/k⌋·⌊W/k⌋; K ≥ 1 for NLL)
            // float32[D]    PCA mean
            // float32[K·D]  PCA components, component-major
            // NLL only:
            //   float32[K]    Gaussian mean
            //   float32[K]    Gaussian singular values S (> 0)
            //   float32[K·K]  Gaussian left singular vectors U, column j of U stored as row j
            int signature = reader.ReadInt32();
            if (signature != Signature)
                throw new FormatException($"Not a DFM model: signature 0x{signature:X8}, expected 0x{Signature:X8}.");
            int version = reader.ReadInt32();
            if (version < 1 || version > FormatVersion)
                throw new FormatException($"DFM model format version {version} is not supported (this library reads 1 to {FormatVersion}).");
            int scoreType = reader.ReadInt32();
            if (scoreType is not ((int)DfmScoreType.Fre or (int)DfmScoreType.Nll))
                throw new FormatException($"DFM model field 'score type' is {scoreType}; expected 0 (FRE) or 1 (NLL).");
            int channels = ReadPositive(reader, "layer channels");
            int height = ReadPositive(reader, "layer height");
            int width = ReadPositive(reader, "layer width");
            if ((long)channels * height * width > int.MaxValue)
                throw new FormatException($"DFM model layer shape {channels}×{height}×{width} is too large.");
            int kernel = reader.ReadInt32();
            if (kernel < 1 || kernel > Math.Min(height, width))
                throw new FormatException($"DFM model field 'pooling kernel size' is {kernel}; expected 1 to {Math.Min(height, width)}.");
            long dimension = (long)channels * (height / kernel) * (width / kernel);
            int components = reader.ReadInt32();
            int minComponents = scoreType == (int)DfmScoreType.Nll ? 1 : 0;
            if (components < minComponents || components > dimension || (long)components * dimension > Array.MaxLength)
                throw new FormatException($"DFM model field 'component count' is {components}; expected {minComponents} to {dimension}.");
            int d = (int)dimension;
            var mean = ReadFloats(reader, d, "PCA mean");
            var basis = ReadFloats(reader, components * d, "PCA components");
            SingleClassGaussian? gaussian = null;
            if (scoreType == (int)DfmScoreType.Nll)
            {
                var gaussianMean = ReadFloats(reader, components, "Gaussian mean");
                var sigma = ReadFloats(reader, components, "Gaussian singular values");
                foreach (float s in sigma)
                    if (!(s > 0))
                        throw new FormatException($"DFM model field 'Gaussian singular values' holds {s}; they must be positive.");
                var u = ReadFloats(reader, components * components, "Gaussian singular vectors");
                gaussian = new SingleClassGaussian(gaussianMean, u, sigma);
            }
            return new DfmModel(new LayerShape(channels, height, width), kernel, (DfmScoreType)scoreType, new Pca(mean, basis, components), gaussian);
        }
        catch (EndOfStreamException e)
        {
            throw new FormatException("The DFM model data is truncated.", e);
        }
    }

    private static int ReadPositive(BinaryReader reader, string field)
    {
        int value = reader.ReadInt32();
        if (value <= 0)
            throw new FormatException($"DFM model field '{field}' is {value}; it must be positive.");
        return value;
    }

    private static float[] ReadFloats(BinaryReader reader, int count, string field)
    {
        var values = new float[count];
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan());
        int read = reader.Read(bytes);
        while (read < bytes.Length)
        {
            int more = reader.Read(bytes[read..]);
            if (more == 0)
                throw new FormatException($"The DFM model data is truncated inside field '{field}'.");
            read += more;
        }
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("DFM models are stored little-endian; big-endian machines are not supported.");
        foreach (float v in values)
            if (!float.IsFinite(v))
                throw new FormatException($"DFM model field '{field}' holds a non-finite value ({v}).");
        return values;
    }

    private static void WriteFloats(BinaryWriter writer, float[] values) =>
        writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
}
