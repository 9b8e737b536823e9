using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// A trained CFA model: the descriptor's CoordConv 1×1 convolution and the memory bank of target-oriented patch
/// features. <see cref="Describe"/> turns backbone layer maps into target-oriented features; scoring compares them
/// with <see cref="MemoryBank"/>.
/// </summary>
public sealed class CfaModel
{
    // *** Binary format *** (little-endian, as BinaryWriter writes)
    //   int32    format version (CurrentVersion)
    //   int32    layer count L                                (> 0)
    //   L × { int32 channels, int32 height, int32 width }    (each > 0; the first layer's height and width ≥ 2)
    //   int32    descriptor channels D                        (> 0)
    //   int32    nearest neighbours K                         (> 0, ≤ bank size)
    //   int32    bank size M                                  (> 0)
    //   float32[D × (Σ channels + 2)]  descriptor weight, row-major [D, Σ channels + 2]; the last two input columns
    //                                   belong to the row and column coordinate channels            (finite)
    //   float32[D]                     descriptor bias                                               (finite)
    //   float32[M × D]                 memory bank, patch-major [M, D]                               (finite)
    //
    // Version history:
    //   1  first format.
    private const int CurrentVersion = 1;

    private readonly LayerShape[] _layers;
    private readonly float[] _weight;
    private readonly float[] _bias;
    private readonly float[] _bank;
    private PatchMajorDescriptor? _spareDescriptor;

    internal CfaModel(IReadOnlyList<LayerShape> layers, int descriptorChannels, int numNearestNeighbors,
        float[] weight, float[] bias, float[] bank)
    {
        _layers = layers.ToArray();
        DescriptorChannels = descriptorChannels;
        NumNearestNeighbors = numNearestNeighbors;
        InputChannels = _layers.Sum(l => l.Channels);
        _weight = weight;
        _bias = bias;
        _bank = bank;
        BankSize = bank.Length / descriptorChannels;
    }

    /// <summary>Shapes of the backbone layer maps the model reads, first layer first.</summary>
    public IReadOnlyList<LayerShape> Layers => _layers;

    /// <summary>Height of the feature grid (the first layer's).</summary>
    public int GridHeight => _layers[0].Height;

    /// <summary>Width of the feature grid (the first layer's).</summary>
    public int GridWidth => _layers[0].Width;

    /// <summary>Number of channels of the concatenated layer maps (without the two coordinate channels).</summary>
    public int InputChannels { get; }

    /// <summary>Number of target-oriented feature channels.</summary>
    public int DescriptorChannels { get; }

    /// <summary>Number of memory-bank entries.</summary>
    public int BankSize { get; }

    /// <summary>Number of nearest memory-bank entries a patch score uses.</summary>
    public int NumNearestNeighbors { get; }

    /// <summary>The memory bank, patch-major [<see cref="BankSize"/>, <see cref="DescriptorChannels"/>].</summary>
    public ReadOnlySpan<float> MemoryBank => _bank;

    /// <summary>The descriptor's 1×1 convolution weight, row-major [<see cref="DescriptorChannels"/>, <see cref="InputChannels"/> + 2]; the last two columns weigh the row and column coordinate channels.</summary>
    public ReadOnlySpan<float> DescriptorWeight => _weight;

    /// <summary>The descriptor's convolution bias [<see cref="DescriptorChannels"/>].</summary>
    public ReadOnlySpan<float> DescriptorBias => _bias;

    /// <summary>Computes the target-oriented features of <paramref name="batch"/> images (on the CPU).</summary>
    /// <param name="layerMaps">One array per layer; array l holds batch × C_l × H_l × W_l values.</param>
    /// <param name="batch">Number of images.</param>
    /// <param name="destination">Receives batch × (GridHeight·GridWidth) × DescriptorChannels values, patch-major per image.</param>
    /// <exception cref="ArgumentException">Wrong number of maps, wrong lengths, or a destination too short.</exception>
    public void Describe(IReadOnlyList<float[]> layerMaps, int batch, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(layerMaps);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        if (layerMaps.Count != _layers.Length)
            throw new ArgumentException($"Expected {_layers.Length} layer maps, got {layerMaps.Count}.", nameof(layerMaps));
        for (int l = 0; l < _layers.Length; l++)
        {
            long expected = (long)batch * _layers[l].Size;
            if (layerMaps[l] is null || layerMaps[l].Length != expected)
                throw new ArgumentException($"Layer {l} map holds {layerMaps[l]?.Length ?? 0} values, expected {expected} ({batch} × {_layers[l]}).", nameof(layerMaps));
        }
        long outputs = (long)batch * GridHeight * GridWidth * DescriptorChannels;
        if (destination.Length < outputs)
            throw new ArgumentException($"The destination holds {destination.Length} values, {outputs} are needed.", nameof(destination));

        // The descriptor's buffers (tens of megabytes a batch) are kept for the next call; concurrent callers get their own.
        var descriptor = Interlocked.Exchange(ref _spareDescriptor, null) ?? new PatchMajorDescriptor(_layers, DescriptorChannels);
        descriptor.Forward(layerMaps, batch, _weight, _bias, destination[..(int)outputs]);
        _spareDescriptor = descriptor;
    }

    /// <summary>Writes the model (see the binary format in the source).</summary>
    /// <param name="writer">Destination.</param>
    public void Write(BinaryWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        // *** Binary format ***: version; L; L × (channels, height, width); D; K; M;
        //     weight[D × (Σ channels + 2)]; bias[D]; bank[M × D] (all float32).
        writer.Write(CurrentVersion);
        writer.Write(_layers.Length);
        foreach (var layer in _layers)
        {
            writer.Write(layer.Channels);
            writer.Write(layer.Height);
            writer.Write(layer.Width);
        }
        writer.Write(DescriptorChannels);
        writer.Write(NumNearestNeighbors);
        writer.Write(BankSize);
        WriteFloats(writer, _weight);
        WriteFloats(writer, _bias);
        WriteFloats(writer, _bank);
    }

    /// <summary>Reads a model written by <see cref="Write"/>, checking every value.</summary>
    /// <param name="reader">Source.</param>
    /// <exception cref="FormatException">The data is not a valid CFA model; the message names the field.</exception>
    public static CfaModel Read(BinaryReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        try
        {
            // *** Binary format ***: version; L; L × (channels, height, width); D; K; M;
            //     weight[D × (Σ channels + 2)]; bias[D]; bank[M × D] (all float32).
            int version = reader.ReadInt32();
            if (version != CurrentVersion)
                throw new FormatException($"CFA model: unsupported format version {version} (this library reads version {CurrentVersion}).");
            int layerCount = reader.ReadInt32();
            if (layerCount <= 0 || layerCount > 1024)
                throw new FormatException($"CFA model: layer count {layerCount} is out of range (1 to 1024).");
            var layers = new LayerShape[layerCount];
            long inputChannels = 0;
            for (int l = 0; l < layerCount; l++)
            {
                int c = Positive(reader.ReadInt32(), $"layer {l} channels");
                int h = Positive(reader.ReadInt32(), $"layer {l} height");
                int w = Positive(reader.ReadInt32(), $"layer {l} width");
                layers[l] = new LayerShape(c, h, w);
                inputChannels += c;
            }
            if (layers[0].Height < 2 || layers[0].Width < 2)
                throw new FormatException($"CFA model: the first layer's grid {layers[0].Height}×{layers[0].Width} is smaller than 2×2.");
            int d = Positive(reader.ReadInt32(), "descriptor channels");
            int k = Positive(reader.ReadInt32(), "nearest neighbours");
            int m = Positive(reader.ReadInt32(), "bank size");
            if (k > m)
                throw new FormatException($"CFA model: nearest neighbours {k} exceeds the bank size {m}.");
            var weight = ReadFloats(reader, (long)d * (inputChannels + 2), "descriptor weight");
            var bias = ReadFloats(reader, d, "descriptor bias");
            var bank = ReadFloats(reader, (long)m * d, "memory bank");
            return new CfaModel(layers, d, k, weight, bias, bank);
        }
        catch (EndOfStreamException e)
        {
            throw new FormatException("CFA model: the data ends early.", e);
        }
    }

    private static int Positive(int value, string field) =>
        value > 0 ? value : throw new FormatException($"CFA model: {field} must be positive (got {value}).");

    private static void WriteFloats(BinaryWriter writer, float[] values) =>
        writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));

    private static float[] ReadFloats(BinaryReader reader, long count, string field)
    {
        if (count > Array.MaxLength)
            throw new FormatException($"CFA model: {field} would hold {count} values, more than an array can.");
        var stream = reader.BaseStream;
        if (stream.CanSeek && stream.Length - stream.Position < count * sizeof(float))
            throw new FormatException($"CFA model: {field} needs {count * sizeof(float)} bytes, only {stream.Length - stream.Position} remain.");
        var values = new float[count];
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan());
        int read = reader.Read(bytes);
        while (read < bytes.Length)
        {
            int n = reader.Read(bytes[read..]);
            if (n <= 0)
                throw new FormatException($"CFA model: {field} ends early.");
            read += n;
        }
        for (long i = 0; i < count; i++)
            if (!float.IsFinite(values[i]))
                throw new FormatException($"CFA model: {field} value {i} is not finite ({values[i]}).");
        return values;
    }
}
