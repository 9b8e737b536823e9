using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// A trained CFlow decoder set: one conditional normalizing flow per backbone layer that maps each feature
/// fiber, conditioned on its position, to a standard normal latent, giving every position a log-likelihood.
/// </summary>
public sealed class CflowModel : IDisposable
{
    // Version history:
    //   1  first format.
    //   2  adds the per-layer log-likelihood references the anomaly map is normalised by (a version 1
    //      model has none and its maps keep the per-image normalisation they were made with).
    private const int FormatVersion = 2;
    private const int FirstFormatVersion = 1;

    private const int MaxLayers = 64;
    private const int MaxDimension = 1 << 16;
    private const int MaxCouplingBlocks = 1024;
    private const int MaxFibersPerChunk = 4096;

    private readonly ConditionalFlow[] _flows;
    // Inference: in C# on the CPU, through LibTorch elsewhere.
    private readonly CflowCpuInference[]? _cpu;
    private readonly FrozenConditionalFlow[]? _frozen;
    private readonly Device _device;
    private bool _disposed;

    internal CflowModel(IReadOnlyList<LayerShape> layers, int conditionVectorSize, float clampAlpha, bool permuteSoft,
        IReadOnlyList<ConditionalFlow> flows, Device device, float[]? logLikelihoodReferences = null)
    {
        Layers = layers.ToArray();
        LogLikelihoodReferences = logLikelihoodReferences;
        ConditionVectorSize = conditionVectorSize;
        CouplingBlocks = flows[0].Blocks.Count;
        ClampAlpha = clampAlpha;
        PermuteSoft = permuteSoft;
        _flows = flows.ToArray();
        _device = device;
        foreach (var parameter in _flows.SelectMany(f => f.Parameters()))
            parameter.requires_grad_(false);

        if (device.type == DeviceType.CPU)
        {
            _cpu = Layers.Select((shape, l) => new CflowCpuInference(_flows[l],
                PositionalEncoding.Create(conditionVectorSize, shape.Height, shape.Width), shape.Height * shape.Width)).ToArray();
            return;
        }
        _frozen = new FrozenConditionalFlow[_flows.Length];
        using var noGrad = no_grad();
        for (int l = 0; l < _flows.Length; l++)
        {
            using var scope = NewDisposeScope();
            var shape = Layers[l];
            var code = FromSpan(PositionalEncoding.Create(conditionVectorSize, shape.Height, shape.Width),
                new long[] { conditionVectorSize, shape.Height * shape.Width }).to(device).t();
            _frozen[l] = _flows[l].Freeze(code);
        }
    }

    /// <summary>Shapes of the backbone layers the decoders were trained on, one decoder per layer.</summary>
    public IReadOnlyList<LayerShape> Layers { get; }

    /// <summary>Length of the positional condition vector.</summary>
    public int ConditionVectorSize { get; }

    /// <summary>Coupling blocks per decoder.</summary>
    public int CouplingBlocks { get; }

    /// <summary>Affine clamping α of the coupling blocks.</summary>
    public float ClampAlpha { get; }

    /// <summary>Whether the blocks mix channels with random rotations rather than permutations.</summary>
    public bool PermuteSoft { get; }

    /// <summary>
    /// Per layer, the log-likelihood per dimension that the anomaly map treats as fully normal: the mean over the
    /// training images of each image's highest log-likelihood on that layer, fixed at training time so that an
    /// image's map depends neither on the images scored with it nor on its own best position. Null for a model
    /// saved before these references existed (format version 1); its maps keep the per-image normalisation.
    /// </summary>
    public IReadOnlyList<float>? LogLikelihoodReferences { get; internal set; }

    internal IReadOnlyList<ConditionalFlow> Flows => _flows;

    /// <summary>Sets <see cref="LogLikelihoodReferences"/> from the training images' log-likelihoods.</summary>
    /// <param name="training">The training features.</param>
    /// <param name="batchSize">Images per <see cref="LogLikelihoods"/> call.</param>
    internal void CalibrateReferences(IFeatureSource training, int batchSize)
    {
        var sums = new double[Layers.Count];
        var maps = Layers.Select(s => new float[batchSize * s.Size]).ToArray();
        var logLikelihoods = Layers.Select(s => new float[batchSize * s.Height * s.Width]).ToArray();
        for (int first = 0; first < training.Count; first += batchSize)
        {
            int batch = Math.Min(batchSize, training.Count - first);
            for (int l = 0; l < Layers.Count; l++)
                for (int i = 0; i < batch; i++)
                    training.Read(first + i, l, maps[l].AsSpan(i * Layers[l].Size, Layers[l].Size));
            LogLikelihoods(maps, batch, logLikelihoods);
            for (int l = 0; l < Layers.Count; l++)
            {
                int positions = Layers[l].Height * Layers[l].Width;
                for (int i = 0; i < batch; i++)
                    sums[l] += System.Numerics.Tensors.TensorPrimitives.Max(logLikelihoods[l].AsSpan(i * positions, positions));
            }
        }
        LogLikelihoodReferences = sums.Select(s => (float)(s / training.Count)).ToArray();
    }

    /// <summary>
    /// Computes, for every position of every layer, the log-likelihood per dimension of its feature fiber
    /// (log p(x | position) / C, as anomalib's CFlow computes it). Safe to call from several threads at once.
    /// </summary>
    /// <param name="layerMaps">One array per layer holding <paramref name="batch"/> maps of that layer, each C×H×W (NCHW order).</param>
    /// <param name="batch">Number of images.</param>
    /// <param name="destination">One array per layer receiving <paramref name="batch"/>×H×W values (image, row, column order).</param>
    /// <exception cref="ArgumentException">The arrays do not match <see cref="Layers"/> and <paramref name="batch"/>.</exception>
    public void LogLikelihoods(IReadOnlyList<float[]> layerMaps, int batch, IReadOnlyList<float[]> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(layerMaps);
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        if (layerMaps.Count != Layers.Count)
            throw new ArgumentException($"Expected {Layers.Count} layer maps, got {layerMaps.Count}.", nameof(layerMaps));
        if (destination.Count != Layers.Count)
            throw new ArgumentException($"Expected {Layers.Count} destination arrays, got {destination.Count}.", nameof(destination));
        for (int l = 0; l < Layers.Count; l++)
        {
            long need = (long)batch * Layers[l].Size;
            if (layerMaps[l] is null || layerMaps[l].Length < need)
                throw new ArgumentException($"Layer {l} map holds {layerMaps[l]?.Length ?? 0} values; {batch} images of {Layers[l]} need {need}.", nameof(layerMaps));
            long needOut = (long)batch * Layers[l].Height * Layers[l].Width;
            if (destination[l] is null || destination[l].Length < needOut)
                throw new ArgumentException($"Destination {l} holds {destination[l]?.Length ?? 0} values; {batch} images of {Layers[l].Height}×{Layers[l].Width} need {needOut}.", nameof(destination));
        }
        if (batch == 0)
            return;
        if (_cpu is not null)
        {
            for (int l = 0; l < Layers.Count; l++)
                _cpu[l].LogLikelihoods(layerMaps[l], 0, batch, destination[l], 0);
            return;
        }

        TorchRuntime.EnsureAvailable();
        using var noGrad = no_grad();
        for (int l = 0; l < Layers.Count; l++)
        {
            var shape = Layers[l];
            int positions = shape.Height * shape.Width;
            int imagesPerChunk = Math.Max(1, MaxFibersPerChunk / positions);
            for (int first = 0; first < batch; first += imagesPerChunk)
            {
                int count = Math.Min(imagesPerChunk, batch - first);
                using var scope = NewDisposeScope();
                var maps = FromSpan(layerMaps[l].AsSpan(first * shape.Size, count * shape.Size),
                    new long[] { count, shape.Channels, positions });
                var fibers = maps.to(_device).transpose(0, 1).contiguous();           // [C, count, H·W]
                var logProb = _frozen![l].LogLikelihood(fibers);                         // [count, H·W]
                CopyTo(logProb, destination[l].AsSpan(first * positions, count * positions));
            }
        }
    }

    /// <summary>Writes the model; <see cref="Read"/> reads it back.</summary>
    /// <param name="writer">Destination.</param>
    public void Write(BinaryWriter writer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(writer);
        // *** Binary format ***
        // int32    format version (FormatVersion)
        // int32    layer count L (1 … 64)
        // int32    condition vector size P (positive multiple of 4)
        // int32    coupling blocks per layer K (1 … 1024)
        // float32  clamp alpha (positive, finite)
        // byte     permute soft (0 = permutations, 1 = rotations)
        // L × layer:
        //   int32  channels C (≥ 2), int32 height H (≥ 1), int32 width W (≥ 1)
        //   K × coupling block (n = C − C/2 + P subnet inputs, 2n hidden units, m = 2·(C/2) outputs):
        //     permutation: C × int32 indices, a permutation of 0 … C−1 (y[i] = v[index[i]]), when permute soft is 0;
        //                  C×C × float32 rotation R, row-major (y = R·v), when permute soft is 1
        //     C × float32     global scale g before activation (σ = 0.1·softplus_β=0.5(g))
        //     C × float32     global offset
        //     2n×n × float32  subnet weight 1, row-major [2n, n], feature inputs first, then the condition
        //     2n × float32    subnet bias 1
        //     m×2n × float32  subnet weight 2, row-major [m, 2n]; rows 0 … C/2−1 give log-scales, the rest shifts
        //     m × float32     subnet bias 2
        // version 2 on: byte  has references (0: none, the model was first saved as version 1; 1: present)
        //               L × float32 log-likelihood reference per layer when present (see LogLikelihoodReferences)
        // All float32 values are finite.
        writer.Write(FormatVersion);
        writer.Write(Layers.Count);
        writer.Write(ConditionVectorSize);
        writer.Write(CouplingBlocks);
        writer.Write(ClampAlpha);
        writer.Write((byte)(PermuteSoft ? 1 : 0));
        for (int l = 0; l < Layers.Count; l++)
        {
            writer.Write(Layers[l].Channels);
            writer.Write(Layers[l].Height);
            writer.Write(Layers[l].Width);
            foreach (var block in _flows[l].Blocks)
            {
                if (PermuteSoft)
                    WriteTensor(writer, block.Rotation!, ScalarType.Float32);
                else
                    WriteTensor(writer, block.Permutation!, ScalarType.Int32);
                WriteTensor(writer, block.GlobalScale, ScalarType.Float32);
                WriteTensor(writer, block.GlobalOffset, ScalarType.Float32);
                WriteTensor(writer, block.Weight1, ScalarType.Float32);
                WriteTensor(writer, block.Bias1, ScalarType.Float32);
                WriteTensor(writer, block.Weight2, ScalarType.Float32);
                WriteTensor(writer, block.Bias2, ScalarType.Float32);
            }
        }
        writer.Write((byte)(LogLikelihoodReferences is null ? 0 : 1));
        foreach (float reference in LogLikelihoodReferences ?? [])
            writer.Write(reference);
    }

    /// <summary>Reads a model written by <see cref="Write"/>.</summary>
    /// <param name="reader">Source.</param>
    /// <param name="device">Where the model computes; <see cref="ComputeDevice.Auto"/> picks CUDA when usable.</param>
    /// <exception cref="FormatException">The data is truncated, of an unknown version or inconsistent; the message names the field.</exception>
    public static CflowModel Read(BinaryReader reader, ComputeDevice device = ComputeDevice.Auto)
    {
        ArgumentNullException.ThrowIfNull(reader);
        // *** Binary format ***
        // int32    format version (FormatVersion)
        // int32    layer count L (1 … 64)
        // int32    condition vector size P (positive multiple of 4)
        // int32    coupling blocks per layer K (1 … 1024)
        // float32  clamp alpha (positive, finite)
        // byte     permute soft (0 = permutations, 1 = rotations)
        // L × layer:
        //   int32  channels C (≥ 2), int32 height H (≥ 1), int32 width W (≥ 1)
        //   K × coupling block (n = C − C/2 + P subnet inputs, 2n hidden units, m = 2·(C/2) outputs):
        //     permutation: C × int32 indices, a permutation of 0 … C−1 (y[i] = v[index[i]]), when permute soft is 0;
        //                  C×C × float32 rotation R, row-major (y = R·v), when permute soft is 1
        //     C × float32     global scale g before activation (σ = 0.1·softplus_β=0.5(g))
        //     C × float32     global offset
        //     2n×n × float32  subnet weight 1, row-major [2n, n], feature inputs first, then the condition
        //     2n × float32    subnet bias 1
        //     m×2n × float32  subnet weight 2, row-major [m, 2n]; rows 0 … C/2−1 give log-scales, the rest shifts
        //     m × float32     subnet bias 2
        // version 2 on: byte  has references (0: none, the model was first saved as version 1; 1: present)
        //               L × float32 log-likelihood reference per layer when present (see LogLikelihoodReferences)
        // All float32 values are finite.
        int version = ReadInt(reader, "format version");
        if (version < FirstFormatVersion || version > FormatVersion)
            throw new FormatException($"CFlow model: format version {version} is not supported (expected {FirstFormatVersion} … {FormatVersion}).");
        int layerCount = ReadInt(reader, "layer count");
        if (layerCount < 1 || layerCount > MaxLayers)
            throw new FormatException($"CFlow model: layer count {layerCount} is out of range 1 … {MaxLayers}.");
        int conditionSize = ReadInt(reader, "condition vector size");
        if (conditionSize <= 0 || conditionSize % 4 != 0 || conditionSize > MaxDimension)
            throw new FormatException($"CFlow model: condition vector size {conditionSize} is not a positive multiple of 4 (up to {MaxDimension}).");
        int blocks = ReadInt(reader, "coupling blocks");
        if (blocks < 1 || blocks > MaxCouplingBlocks)
            throw new FormatException($"CFlow model: coupling block count {blocks} is out of range 1 … {MaxCouplingBlocks}.");
        float clamp = ReadFloat(reader, "clamp alpha");
        if (!(clamp > 0) || float.IsInfinity(clamp))
            throw new FormatException($"CFlow model: clamp alpha {clamp} is not positive and finite.");
        byte soft = ReadByte(reader, "permute soft");
        if (soft > 1)
            throw new FormatException($"CFlow model: permute soft flag {soft} is neither 0 nor 1.");
        bool permuteSoft = soft == 1;

        TorchRuntime.EnsureAvailable();
        var torchDevice = TorchRuntime.SelectDevice(device);
        var layers = new List<LayerShape>();
        var flows = new List<ConditionalFlow>();
        try
        {
            for (int l = 0; l < layerCount; l++)
            {
                int channels = ReadInt(reader, $"layer {l} channels");
                int height = ReadInt(reader, $"layer {l} height");
                int width = ReadInt(reader, $"layer {l} width");
                if (channels < 2 || channels > MaxDimension)
                    throw new FormatException($"CFlow model: layer {l} channels {channels} is out of range 2 … {MaxDimension}.");
                if (height < 1 || height > MaxDimension || width < 1 || width > MaxDimension)
                    throw new FormatException($"CFlow model: layer {l} grid {height}×{width} is out of range 1 … {MaxDimension}.");
                layers.Add(new LayerShape(channels, height, width));
                int n = channels - channels / 2 + conditionSize, hidden = 2 * n, m = 2 * (channels / 2);
                var layerBlocks = new List<AllInOneCouplingBlock>();
                try
                {
                    for (int k = 0; k < blocks; k++)
                    {
                        string where = $"layer {l} block {k}";
                        using var scope = NewDisposeScope();
                        Tensor permutation = permuteSoft
                            ? ReadFloats(reader, $"{where} rotation", channels, channels)
                            : ReadPermutation(reader, $"{where} permutation", channels);
                        var g = ReadFloats(reader, $"{where} global scale", channels);
                        var offset = ReadFloats(reader, $"{where} global offset", channels);
                        var w1 = ReadFloats(reader, $"{where} subnet weight 1", hidden, n);
                        var b1 = ReadFloats(reader, $"{where} subnet bias 1", hidden);
                        var w2 = ReadFloats(reader, $"{where} subnet weight 2", m, hidden);
                        var b2 = ReadFloats(reader, $"{where} subnet bias 2", m);
                        layerBlocks.Add(new AllInOneCouplingBlock(channels, conditionSize, clamp, permuteSoft,
                            w1, b1, w2, b2, g, offset, permutation, ScalarType.Float32, torchDevice));
                    }
                }
                catch
                {
                    foreach (var b in layerBlocks)
                        b.Dispose();
                    throw;
                }
                flows.Add(new ConditionalFlow(layerBlocks));
            }
            float[]? references = version >= 2 ? ReadReferences(reader, layerCount) : null;
            return new CflowModel(layers, conditionSize, clamp, permuteSoft, flows, torchDevice, references);
        }
        catch
        {
            foreach (var f in flows)
                f.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var frozen in _frozen ?? [])
            frozen.Dispose();
        foreach (var flow in _flows)
            flow.Dispose();
    }

    internal static Tensor FromSpan(ReadOnlySpan<float> values, long[] shape)
    {
        var tensor = empty(shape, ScalarType.Float32);
        MemoryMarshal.AsBytes(values).CopyTo(tensor.bytes);
        return tensor;
    }

    internal static void CopyTo(Tensor tensor, Span<float> destination)
    {
        using var scope = NewDisposeScope();
        var host = tensor.to(ScalarType.Float32, CPU).contiguous();
        MemoryMarshal.Cast<byte, float>(host.bytes).CopyTo(destination);
    }

    private static void WriteTensor(BinaryWriter writer, Tensor tensor, ScalarType type)
    {
        using var scope = NewDisposeScope();
        var host = tensor.detach().to(type, CPU).contiguous();
        writer.Write(host.bytes);
    }

    private static int ReadInt(BinaryReader reader, string field)
    {
        try { return reader.ReadInt32(); }
        catch (EndOfStreamException e) { throw Truncated(field, e); }
    }

    private static float ReadFloat(BinaryReader reader, string field)
    {
        try { return reader.ReadSingle(); }
        catch (EndOfStreamException e) { throw Truncated(field, e); }
    }

    private static byte ReadByte(BinaryReader reader, string field)
    {
        try { return reader.ReadByte(); }
        catch (EndOfStreamException e) { throw Truncated(field, e); }
    }

    private static byte[] ReadBytes(BinaryReader reader, string field, long count)
    {
        byte[] bytes = reader.ReadBytes(checked((int)count));
        if (bytes.Length != count)
            throw Truncated(field, null);
        return bytes;
    }

    private static Tensor ReadFloats(BinaryReader reader, string field, params int[] shape)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        byte[] bytes = ReadBytes(reader, field, count * sizeof(float));
        var values = MemoryMarshal.Cast<byte, float>(bytes);
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new FormatException($"CFlow model: {field} holds a non-finite value ({values[i]}) at {i}.");
        return FromSpan(values, shape.Select(s => (long)s).ToArray());
    }

    private static float[]? ReadReferences(BinaryReader reader, int layerCount)
    {
        byte present = ReadByte(reader, "log-likelihood references flag");
        if (present > 1)
            throw new FormatException($"CFlow model: log-likelihood references flag {present} is neither 0 nor 1.");
        if (present == 0)
            return null;
        var references = new float[layerCount];
        for (int l = 0; l < layerCount; l++)
        {
            references[l] = ReadFloat(reader, $"layer {l} log-likelihood reference");
            if (!float.IsFinite(references[l]))
                throw new FormatException($"CFlow model: layer {l} log-likelihood reference {references[l]} is not finite.");
        }
        return references;
    }

    private static Tensor ReadPermutation(BinaryReader reader, string field, int channels)
    {
        byte[] bytes = ReadBytes(reader, field, (long)channels * sizeof(int));
        var indices = MemoryMarshal.Cast<byte, int>(bytes);
        var seen = new bool[channels];
        foreach (int index in indices)
        {
            if (index < 0 || index >= channels || seen[index])
                throw new FormatException($"CFlow model: {field} is not a permutation of 0 … {channels - 1} (index {index}).");
            seen[index] = true;
        }
        var tensor = empty(new long[] { channels }, ScalarType.Int32);
        bytes.CopyTo(tensor.bytes);
        return tensor;
    }

    private static FormatException Truncated(string field, Exception? inner) =>
        new($"CFlow model: the data ends while reading {field}.", inner);
}
