using Google.Protobuf;
using Microsoft.ML.Anomaly.Vision.Onnx;
using static Microsoft.ML.Anomaly.Vision.Export.OnnxGraphBuilder;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Writes torchvision's ResNet-18 and Wide-ResNet-50-2 feature extractors as ONNX models, from a torchvision
/// state dict or with seeded random weights.
/// </summary>
/// <remarks>
/// The models take <c>input</c> (N×3×H×W, normalized with the ImageNet mean and standard deviation) and have
/// the graph outputs <c>layer1</c> … <c>layer4</c>. Node names follow the module scopes that
/// <c>torch.onnx.export</c> writes (for example <c>/layer1/layer1.1/relu_1/Relu</c>), so module names resolve
/// on these models exactly as on exported ones. The classifier head (avgpool, fc) is not written.
/// </remarks>
public static class ResNetBackbones
{
    /// <summary>Metadata key holding the architecture's torchvision name.</summary>
    internal const string ArchitectureMetadataKey = "anomaly_vision.architecture";

    private const int OpsetVersion = 17;
    private const long IrVersion = 8;
    private const float BatchNormEpsilon = 1e-5f;

    /// <summary>Writes ResNet-18 (basic blocks, [2, 2, 2, 2]) with the weights of a torchvision state dict.</summary>
    /// <param name="torchvisionStateDict">Parameters by torchvision key (<c>conv1.weight</c>, <c>bn1.running_mean</c>,
    /// <c>layer1.0.conv1.weight</c>, <c>layer2.0.downsample.0.weight</c>, …), each flattened in row-major order.
    /// Other keys (<c>fc.*</c>, <c>num_batches_tracked</c>) are ignored.</param>
    /// <returns>The serialized ONNX model.</returns>
    /// <exception cref="ArgumentException">A parameter is missing or has the wrong number of values.</exception>
    public static byte[] WriteResNet18(IReadOnlyDictionary<string, float[]> torchvisionStateDict)
    {
        ArgumentNullException.ThrowIfNull(torchvisionStateDict);
        return Build(ResNetArchitecture.ResNet18, FromStateDict(torchvisionStateDict), StateDictDescription(ResNetArchitecture.ResNet18, "a torchvision state dict"), untrainedSeed: null);
    }

    /// <summary>Writes Wide-ResNet-50-2 (bottleneck blocks, [3, 4, 6, 3], width per group 128) with the weights of a torchvision state dict.</summary>
    /// <param name="torchvisionStateDict">Parameters by torchvision key, each flattened in row-major order.
    /// Other keys (<c>fc.*</c>, <c>num_batches_tracked</c>) are ignored.</param>
    /// <returns>The serialized ONNX model.</returns>
    /// <exception cref="ArgumentException">A parameter is missing or has the wrong number of values.</exception>
    public static byte[] WriteWideResNet50_2(IReadOnlyDictionary<string, float[]> torchvisionStateDict)
    {
        ArgumentNullException.ThrowIfNull(torchvisionStateDict);
        return Build(ResNetArchitecture.WideResNet50_2, FromStateDict(torchvisionStateDict), StateDictDescription(ResNetArchitecture.WideResNet50_2, "a torchvision state dict"), untrainedSeed: null);
    }

    /// <summary>
    /// A backbone from a torchvision checkpoint of <c>resnet18</c> or <c>wide_resnet50_2</c> (anomaly detectors'
    /// usual backbones): a state dict saved with <c>torch.save(model.state_dict(), path)</c> (<c>.pth</c>, <c>.pt</c>)
    /// or as safetensors. The architecture is recognised from the keys; no code from the file is run.
    /// </summary>
    /// <param name="path">The checkpoint file; its format is recognised from its first bytes.</param>
    /// <returns>The backbone, written as ONNX (outputs <c>layer1</c> … <c>layer4</c>) on its first use.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The file is not such a checkpoint; the message lists the missing, unexpected
    /// and misshapen keys.</exception>
    public static BackboneModel FromTorchvisionCheckpoint(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var (architecture, parameters) = TorchvisionCheckpoint.Read(path);
        var description = StateDictDescription(architecture, $"torchvision checkpoint {Path.GetFileName(path)}");
        return new BackboneModel(description, () => Build(architecture, FromStateDict(parameters), description, untrainedSeed: null));
    }

    /// <summary>
    /// Writes ResNet-18 with seeded random weights initialized as torchvision does (Kaiming-normal convolutions,
    /// identity batch norms). Such a model is for tests and demos only: its features are not pretrained.
    /// </summary>
    /// <param name="seed">Seed of the weights; the same seed gives the same bytes.</param>
    /// <returns>The serialized ONNX model, marked untrained in its metadata.</returns>
    public static byte[] CreateUntrainedResNet18(int seed = 0)
        => Build(ResNetArchitecture.ResNet18, Random(seed), UntrainedDescription(ResNetArchitecture.ResNet18, seed), seed);

    /// <summary>
    /// Writes Wide-ResNet-50-2 with seeded random weights initialized as torchvision does. Such a model is for
    /// tests and demos only: its features are not pretrained.
    /// </summary>
    /// <param name="seed">Seed of the weights; the same seed gives the same bytes.</param>
    /// <returns>The serialized ONNX model, marked untrained in its metadata.</returns>
    public static byte[] CreateUntrainedWideResNet50_2(int seed = 0)
        => Build(ResNetArchitecture.WideResNet50_2, Random(seed), UntrainedDescription(ResNetArchitecture.WideResNet50_2, seed), seed);

    /// <summary>The parameters a torchvision state dict must hold for an architecture: key and shape, in graph order.</summary>
    internal static IReadOnlyList<(string Key, long[] Shape)> ParameterShapes(ResNetArchitecture architecture)
    {
        var list = new List<(string, long[])>();
        Build(architecture, (key, shape, _, _) => list.Add((key, shape)), description: null, untrainedSeed: null, writeModel: false);
        return list;
    }

    /// <summary>Supplies one parameter: fills <paramref name="destination"/> (row-major, empty when only shapes are wanted)
    /// with the values of the parameter of the given torchvision key, shape and kind.</summary>
    private delegate void WeightSource(string key, long[] shape, ParameterKind kind, Span<float> destination);

    private enum ParameterKind { ConvWeight, BatchNormWeight, BatchNormBias, RunningMean, RunningVar }

    private static WeightSource FromStateDict(IReadOnlyDictionary<string, float[]> stateDict) => (key, shape, _, destination) =>
    {
        long expected = shape.Aggregate(1L, (a, b) => a * b);
        if (!stateDict.TryGetValue(key, out var values) || values is null)
        {
            throw new ArgumentException(
                $"The state dict has no parameter '{key}' (expected shape [{string.Join(", ", shape)}]).", "torchvisionStateDict");
        }
        if (values.Length != expected)
        {
            throw new ArgumentException(
                $"Parameter '{key}' has {values.Length} values; expected shape [{string.Join(", ", shape)}] = {expected} values.",
                "torchvisionStateDict");
        }
        values.CopyTo(destination);
    };

    private static WeightSource Random(int seed) => (key, shape, kind, destination) =>
    {
        switch (kind)
        {
            case ParameterKind.ConvWeight:
                // Kaiming normal, fan_out mode, ReLU gain: std = sqrt(2 / (out_channels · kh · kw)).
                long fanOut = shape[0] * shape[2] * shape[3];
                SeededNormal.Fill(destination, seed, key, MathF.Sqrt(2f / fanOut));
                break;
            case ParameterKind.BatchNormWeight:
            case ParameterKind.RunningVar:
                destination.Fill(1f);
                break;
            default:
                destination.Clear();
                break;
        }
    };

    /// <summary>The torchvision name of an architecture (<c>resnet18</c>, <c>wide_resnet50_2</c>).</summary>
    internal static string TorchvisionName(ResNetArchitecture architecture) =>
        architecture == ResNetArchitecture.WideResNet50_2 ? "wide_resnet50_2" : "resnet18";

    private static BackboneDescription StateDictDescription(ResNetArchitecture architecture, string source) =>
        new(TorchvisionName(architecture), source, IsPretrained: true);

    private static BackboneDescription UntrainedDescription(ResNetArchitecture architecture, int seed) =>
        new(TorchvisionName(architecture), $"random weights (seed {seed}) written by {nameof(ResNetBackbones)}", IsPretrained: false);

    private static byte[] Build(ResNetArchitecture architecture, WeightSource weights, BackboneDescription description, int? untrainedSeed) =>
        Build(architecture, weights, description, untrainedSeed, writeModel: true)!;

    private static byte[]? Build(ResNetArchitecture architecture, WeightSource weights, BackboneDescription? description, int? untrainedSeed, bool writeModel)
    {
        var g = new GraphBuilder(weights, writeModel);
        bool bottleneck = architecture == ResNetArchitecture.WideResNet50_2;
        int[] blocks = bottleneck ? new[] { 3, 4, 6, 3 } : new[] { 2, 2, 2, 2 };
        int expansion = bottleneck ? 4 : 1;
        int widthFactor = bottleneck ? 2 : 1;           // width_per_group 128 / 64

        string x = g.Conv("/conv1", "input", "conv1", 64, 3, 7, 2, 3);
        x = g.BatchNorm("/bn1", x, "bn1", 64);
        x = g.Relu("/relu", x);
        x = g.MaxPool("/maxpool", x);

        int inplanes = 64;
        var outputs = new List<(string Name, int Channels)>();
        for (int layer = 0; layer < 4; layer++)
        {
            int planes = 64 << layer;
            int stride = layer == 0 ? 1 : 2;
            string layerName = $"layer{layer + 1}";
            for (int b = 0; b < blocks[layer]; b++)
            {
                int s = b == 0 ? stride : 1;
                string key = $"{layerName}.{b}";
                string scope = $"/{layerName}/{key}";
                string? outputName = b == blocks[layer] - 1 ? layerName : null;
                string identity = x;
                string y;
                if (bottleneck)
                {
                    int width = planes * widthFactor;
                    y = g.Conv($"{scope}/conv1", x, $"{key}.conv1", width, inplanes, 1, 1, 0);
                    y = g.BatchNorm($"{scope}/bn1", y, $"{key}.bn1", width);
                    y = g.Relu($"{scope}/relu", y);
                    y = g.Conv($"{scope}/conv2", y, $"{key}.conv2", width, width, 3, s, 1);
                    y = g.BatchNorm($"{scope}/bn2", y, $"{key}.bn2", width);
                    y = g.Relu($"{scope}/relu_1", y);
                    y = g.Conv($"{scope}/conv3", y, $"{key}.conv3", planes * expansion, width, 1, 1, 0);
                    y = g.BatchNorm($"{scope}/bn3", y, $"{key}.bn3", planes * expansion);
                }
                else
                {
                    y = g.Conv($"{scope}/conv1", x, $"{key}.conv1", planes, inplanes, 3, s, 1);
                    y = g.BatchNorm($"{scope}/bn1", y, $"{key}.bn1", planes);
                    y = g.Relu($"{scope}/relu", y);
                    y = g.Conv($"{scope}/conv2", y, $"{key}.conv2", planes, planes, 3, 1, 1);
                    y = g.BatchNorm($"{scope}/bn2", y, $"{key}.bn2", planes);
                }
                if (s != 1 || inplanes != planes * expansion)
                {
                    identity = g.Conv($"{scope}/downsample/downsample.0", x, $"{key}.downsample.0", planes * expansion, inplanes, 1, s, 0);
                    identity = g.BatchNorm($"{scope}/downsample/downsample.1", identity, $"{key}.downsample.1", planes * expansion);
                }
                y = g.Add(scope, y, identity);
                x = g.Relu($"{scope}/{(bottleneck ? "relu_2" : "relu_1")}", y, outputName);
                inplanes = planes * expansion;
            }
            outputs.Add((layerName, inplanes));
        }

        if (!writeModel)
            return null;

        string archName = TorchvisionName(architecture);
        var graph = g.Graph;
        graph.Name = archName;
        graph.Input.Add(FloatTensorInfo("input", Dim("batch"), Dim(3), Dim("height"), Dim("width")));
        foreach (var (name, channels) in outputs)
            graph.Output.Add(FloatTensorInfo(name, Dim("batch"), Dim(channels), Dim($"{name}_height"), Dim($"{name}_width")));

        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "Anomaly.Vision",
            ProducerVersion = typeof(ResNetBackbones).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = OpsetVersion });
        model.MetadataProps.Add(new StringStringEntryProto { Key = ArchitectureMetadataKey, Value = archName });
        OnnxModelEditor.SetDescription(model, description!);
        if (untrainedSeed is int seed)
        {
            model.DocString = $"torchvision {archName} feature extractor with RANDOM weights (seed {seed}), not pretrained: " +
                              "for tests and demos only; its features do not detect anomalies as a pretrained backbone's do.";
        }
        else
        {
            model.DocString = $"torchvision {archName} feature extractor (outputs layer1 to layer4).";
        }
        return model.ToByteArray();
    }

    /// <summary>Appends nodes and initializers, naming them as the TorchScript-based exporter does.</summary>
    private sealed class GraphBuilder
    {
        private readonly WeightSource _weights;
        private readonly bool _writeValues;

        public GraphBuilder(WeightSource weights, bool writeValues)
        {
            _weights = weights;
            _writeValues = writeValues;
        }

        public GraphProto Graph { get; } = new();

        public string Conv(string scope, string x, string key, int cout, int cin, int k, int stride, int pad)
        {
            string w = Initializer($"{key}.weight", new long[] { cout, cin, k, k }, ParameterKind.ConvWeight);
            var node = Node(scope, "Conv", null, x, w);
            node.Attribute.Add(Ints("dilations", 1, 1));
            node.Attribute.Add(Int("group", 1));
            node.Attribute.Add(Ints("kernel_shape", k, k));
            node.Attribute.Add(Ints("pads", pad, pad, pad, pad));
            node.Attribute.Add(Ints("strides", stride, stride));
            return node.Output[0];
        }

        public string BatchNorm(string scope, string x, string key, int channels)
        {
            var shape = new long[] { channels };
            string scale = Initializer($"{key}.weight", shape, ParameterKind.BatchNormWeight);
            string bias = Initializer($"{key}.bias", shape, ParameterKind.BatchNormBias);
            string mean = Initializer($"{key}.running_mean", shape, ParameterKind.RunningMean);
            string variance = Initializer($"{key}.running_var", shape, ParameterKind.RunningVar);
            var node = Node(scope, "BatchNormalization", null, x, scale, bias, mean, variance);
            node.Attribute.Add(new AttributeProto { Name = "epsilon", F = BatchNormEpsilon, Type = AttributeProto.Types.AttributeType.Float });
            node.Attribute.Add(new AttributeProto { Name = "momentum", F = 0.9f, Type = AttributeProto.Types.AttributeType.Float });
            return node.Output[0];
        }

        public string Relu(string scope, string x, string? output = null) => Node(scope, "Relu", output, x).Output[0];

        public string Add(string scope, string a, string b) => Node(scope, "Add", null, a, b).Output[0];

        public string MaxPool(string scope, string x)
        {
            var node = Node(scope, "MaxPool", null, x);
            node.Attribute.Add(Int("ceil_mode", 0));
            node.Attribute.Add(Ints("dilations", 1, 1));
            node.Attribute.Add(Ints("kernel_shape", 3, 3));
            node.Attribute.Add(Ints("pads", 1, 1, 1, 1));
            node.Attribute.Add(Ints("strides", 2, 2));
            return node.Output[0];
        }

        private NodeProto Node(string scope, string op, string? output, params string[] inputs)
        {
            string name = $"{scope}/{op}";
            var node = new NodeProto { Name = name, OpType = op };
            node.Input.AddRange(inputs);
            node.Output.Add(output ?? name + "_output_0");
            Graph.Node.Add(node);
            return node;
        }

        private string Initializer(string key, long[] shape, ParameterKind kind)
        {
            if (!_writeValues)
            {
                _weights(key, shape, kind, Span<float>.Empty);
                return key;
            }
            long count = shape.Aggregate(1L, (a, b) => a * b);
            float[] values = new float[count];
            _weights(key, shape, kind, values);
            var tensor = new TensorProto { Name = key, DataType = (int)TensorProto.Types.DataType.Float };
            tensor.Dims.AddRange(shape);
            tensor.RawData = LittleEndianBytes(values);
            Graph.Initializer.Add(tensor);
            return key;
        }
    }
}

/// <summary>The ResNet variants that <see cref="ResNetBackbones"/> writes.</summary>
internal enum ResNetArchitecture
{
    /// <summary>ResNet-18: basic blocks [2, 2, 2, 2].</summary>
    ResNet18,

    /// <summary>Wide-ResNet-50-2: bottleneck blocks [3, 4, 6, 3], width per group 128.</summary>
    WideResNet50_2,
}

/// <summary>
/// Fast, reproducible normal samples: every tensor gets its own stream from the seed and its name, cut into
/// fixed chunks that are filled in parallel, so the values do not depend on thread count or order.
/// </summary>
internal static class SeededNormal
{
    private const int ChunkSize = 1 << 16;

    public static void Fill(Span<float> destination, int seed, string key, float std)
    {
        ulong keyHash = 14695981039346656037UL;          // FNV-1a over the UTF-16 key
        foreach (char c in key)
        {
            keyHash ^= c;
            keyHash *= 1099511628211UL;
        }
        ulong baseState = SplitMix((ulong)(uint)seed ^ SplitMix(keyHash));
        int length = destination.Length;
        int chunks = (length + ChunkSize - 1) / ChunkSize;
        if (chunks == 1)
        {
            FillChunk(destination, baseState, 0, std);
            return;
        }
        unsafe
        {
            fixed (float* pointer = destination)
            {
                nint address = (nint)pointer;
                Parallel.For(0, chunks, chunk =>
                {
                    int start = chunk * ChunkSize;
                    var part = new Span<float>((float*)address + start, Math.Min(ChunkSize, length - start));
                    FillChunk(part, baseState, chunk, std);
                });
            }
        }
    }

    private static void FillChunk(Span<float> destination, ulong baseState, int chunk, float std)
    {
        var rng = new Xoshiro256(baseState + (ulong)chunk * 0x9E3779B97F4A7C15UL);
        for (int i = 0; i < destination.Length; i += 2)
        {
            // Box–Muller: two independent standard normals from two uniforms, u1 in (0, 1].
            ulong bits = rng.Next();
            float u1 = ((bits >> 40) + 1) * (1f / (1 << 24));
            float u2 = ((bits >> 16) & 0xFFFFFF) * (1f / (1 << 24));
            float r = MathF.Sqrt(-2f * MathF.Log(u1)) * std;
            var (sin, cos) = MathF.SinCos(2f * MathF.PI * u2);
            destination[i] = r * cos;
            if (i + 1 < destination.Length)
                destination[i + 1] = r * sin;
        }
    }

    internal static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>xoshiro256** generator state.</summary>
    private struct Xoshiro256
    {
        private ulong _s0, _s1, _s2, _s3;

        public Xoshiro256(ulong seed)
        {
            _s0 = SplitMix(seed);
            _s1 = SplitMix(_s0);
            _s2 = SplitMix(_s1);
            _s3 = SplitMix(_s2);
        }

        public ulong Next()
        {
            ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
            ulong t = _s1 << 17;
            _s2 ^= _s0;
            _s3 ^= _s1;
            _s1 ^= _s2;
            _s0 ^= _s3;
            _s2 ^= t;
            _s3 = ulong.RotateLeft(_s3, 45);
            return result;
        }
    }
}
