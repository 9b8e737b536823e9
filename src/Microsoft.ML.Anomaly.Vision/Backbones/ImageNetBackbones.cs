using System.Collections.Concurrent;
using Google.Protobuf;
using Microsoft.ML.Anomaly.Vision.Export;
using Microsoft.ML.Anomaly.Vision.Onnx;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// ImageNet-pretrained backbones from NuGet packages, converted in C# into the feature extractors the detectors read.
/// </summary>
/// <remarks>
/// <para><see cref="ResNet18"/> reads <c>ResNet18.onnx</c> of the NuGet package
/// <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c> (by the ML.NET team, MIT licence; its build copies the file to
/// <c>DnnImageModels/ResNet18Onnx/</c> in the application's folder). That model is a CNTK export of an
/// ImageNet-trained ResNet-18 whose last stage has three basic blocks instead of torchvision's two; it takes
/// 1×3×224×224 images in BGR order, 0–255, minus a per-pixel mean image, and ends in a global average pool.</para>
/// <para>The conversion edits the graph and nothing else of the network: conv1's input channels are reordered
/// to RGB and multiplied by 255·std, and a constant (255·mean − channel mean of the mean image)/(255·std), about
/// 0.01, is added to the input, so the model takes images normalised as the detectors feed them (ImageNet
/// mean and standard deviation, RGB); the mean image is replaced by its per-channel means (its pixels differ
/// from them by 3–6 grey levels). Batch, height and width become free; the CNTK export's asymmetric pads
/// (conv1 [3, 3, 2, 2], max pool and strided convolutions [1, 1, 0, 0]) become torchvision's symmetric ones,
/// which take exactly the same windows at even sizes and torchvision's windows at odd ones; the stage outputs
/// become the graph outputs <c>layer1</c> … <c>layer4</c> and the pooling head is dropped.</para>
/// <para>The package's file declares ONNX opset 8; the converted model declares <see cref="ConvertedOpset"/>, the opset
/// <c>ExportToOnnx</c> writes, so that a detector on it exports. Its remaining operators (Add, Conv, BatchNormalization,
/// Relu, MaxPool) compute the same at both opsets once BatchNormalization's <c>spatial</c> attribute, removed in opset 9, is
/// dropped (it is 1, the per-channel statistics that later opsets always use). Models saved before the converted model
/// declared opset 13 hold it at opset 8: they load and score as before, and their export raises the opset the same way
/// (<see cref="RaiseLegacyOpset"/>).</para>
/// </remarks>
public static class ImageNetBackbones
{
    /// <summary>The NuGet package that ships the ImageNet ResNet-18 ONNX file.</summary>
    public const string ResNet18PackageId = "Microsoft.ML.DnnImageFeaturizer.ResNet18";

    /// <summary>The package version whose file the conversion is written for.</summary>
    public const string ResNet18PackageVersion = "0.23.1";

    /// <summary>Where the package's build puts the file, relative to the application's folder.</summary>
    public static readonly string ResNet18RelativePath = Path.Combine("DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");

    // Tensors of the CNTK export: the image input and the output of each stage (layer1 … layer4).
    private const string OriginalInput = "Input247";
    private static readonly string[] StageTensors = ["ReLU283_Output_0", "ReLU315_Output_0", "ReLU347_Output_0", "ReLU393_Output_0"];
    private const int ConvolutionCount = 22;         // conv1, 2·(2+2+2+3) block convolutions, 3 downsample convolutions
    private const int OriginalSize = 224;
    private const string ArchitectureName = "resnet18_dnnimagefeaturizer";

    /// <summary>The ONNX opset the converted model declares (the package's file declares 8).</summary>
    internal const int ConvertedOpset = 13;

    // The operators left in the converted graph, which mean the same at opsets 8 to ConvertedOpset (without BatchNormalization's spatial).
    private static readonly HashSet<string> ConvertedOperators = new(StringComparer.Ordinal) { "Add", "Conv", "BatchNormalization", "Relu", "MaxPool" };

    /// <summary>Per-channel means (R, G, B) of the package's mean image <c>MeanImage</c> (ResNetPreprocess.onnx), 0–255.</summary>
    internal static ReadOnlySpan<float> MeanImageChannelMeans => [123.151634f, 115.902885f, 103.06262f];

    private static readonly ConcurrentDictionary<string, BackboneModel> Converted = new(StringComparer.Ordinal);

    /// <summary>The description of the converted ImageNet ResNet-18.</summary>
    public static BackboneDescription ResNet18Description { get; } = new(
        "ResNet-18 (ImageNet; 3 blocks in layer4)",
        $"NuGet package {ResNet18PackageId} {ResNet18PackageVersion} (ML.NET team, MIT licence)",
        IsPretrained: true);

    /// <summary>
    /// The ImageNet-pretrained ResNet-18 of the NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c>,
    /// converted to a feature extractor with outputs <c>layer1</c> … <c>layer4</c> at its first use (once per file
    /// and process). The detectors use it when neither <see cref="BackboneDetectorOptions.Backbone"/> nor
    /// <see cref="BackboneDetectorOptions.BackbonePath"/> is set.
    /// </summary>
    /// <param name="path">The package's <c>ResNet18.onnx</c>; default: <see cref="ResNet18RelativePath"/> in the
    /// application's folder, where the package's build copies it.</param>
    /// <returns>The backbone; the same instance for the same file.</returns>
    /// <exception cref="FileNotFoundException">The file is not there; the message names the package to add.</exception>
    /// <remarks>Conversion fails with an <see cref="ArgumentException"/> when the file is not that model.</remarks>
    public static BackboneModel ResNet18(string? path = null)
    {
        string full = Path.GetFullPath(path ?? Path.Combine(AppContext.BaseDirectory, ResNet18RelativePath));
        if (!File.Exists(full))
        {
            throw new FileNotFoundException(
                $"The ImageNet ResNet-18 model '{full}' does not exist. Add the NuGet package {ResNet18PackageId} " +
                $"(version {ResNet18PackageVersion}) to the application's project: its build copies {ResNet18RelativePath} " +
                "into the output folder. Or pass the path of that file.", full);
        }
        return Converted.GetOrAdd(full, file => new BackboneModel(ResNet18Description,
            () => ConvertResNet18(File.ReadAllBytes(file), $"'{file}'")));
    }

    /// <summary>Converts the package's ResNet18.onnx (see the remarks of <see cref="ImageNetBackbones"/>).</summary>
    /// <param name="original">The bytes of the package's file.</param>
    /// <param name="source">Where the bytes come from, for messages.</param>
    /// <returns>The serialized feature extractor.</returns>
    /// <exception cref="ArgumentException">The bytes are not that model.</exception>
    internal static byte[] ConvertResNet18(byte[] original, string source)
    {
        ModelProto model = OnnxModelEditor.Parse(original, source, nameof(original));
        GraphProto graph = model.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var conv1 = CheckIsResNet18(graph, initializers, source);

        // conv1 takes normalised RGB: W'[o, c] = W[o, 2 − c] · 255 · std[c].
        TensorProto weight = initializers[conv1.Input[1]];
        float[] w = OnnxGraphBuilder.ReadFloats(weight);
        float[] converted = new float[w.Length];
        int kernel = 7 * 7;
        for (int o = 0; o < 64; o++)
            for (int c = 0; c < 3; c++)
            {
                float scale = 255f * ImageTensorConverter.StandardDeviation[c];
                var from = w.AsSpan((o * 3 + (2 - c)) * kernel, kernel);
                var to = converted.AsSpan((o * 3 + c) * kernel, kernel);
                for (int k = 0; k < kernel; k++)
                    to[k] = from[k] * scale;
            }
        WriteFloats(weight, converted);

        // x + offset, before conv1 (zero padding then pads exactly where the original's did).
        float[] offset = new float[3];
        for (int c = 0; c < 3; c++)
            offset[c] = (255f * ImageTensorConverter.Mean[c] - MeanImageChannelMeans[c]) / (255f * ImageTensorConverter.StandardDeviation[c]);
        var offsetTensor = new TensorProto { Name = "input_offset", DataType = (int)TensorProto.Types.DataType.Float };
        offsetTensor.Dims.AddRange([1, 3, 1, 1]);
        WriteFloats(offsetTensor, offset);
        graph.Initializer.Add(offsetTensor);
        var shift = new NodeProto { Name = "input_offset_add", OpType = "Add" };
        shift.Input.AddRange(["input", "input_offset"]);
        shift.Output.Add("input_shifted");
        conv1.Input[0] = "input_shifted";
        graph.Node.Insert(0, shift);

        foreach (var node in graph.Node)
        {
            if (node.OpType is "Conv" or "MaxPool")
                MakePadsSymmetric(node);
            for (int i = 0; i < node.Output.Count; i++)
            {
                int stage = Array.IndexOf(StageTensors, node.Output[i]);
                if (stage >= 0)
                    node.Output[i] = $"layer{stage + 1}";
            }
            for (int i = 0; i < node.Input.Count; i++)
            {
                int stage = Array.IndexOf(StageTensors, node.Input[i]);
                if (stage >= 0)
                    node.Input[i] = $"layer{stage + 1}";
            }
        }

        graph.Input.Clear();
        graph.Input.Add(OnnxGraphBuilder.FloatTensorInfo("input", OnnxGraphBuilder.Dim("batch"), OnnxGraphBuilder.Dim(3), OnnxGraphBuilder.Dim("height"), OnnxGraphBuilder.Dim("width")));
        graph.Output.Clear();
        for (int stage = 0; stage < StageTensors.Length; stage++)
        {
            string name = $"layer{stage + 1}";
            graph.Output.Add(OnnxGraphBuilder.FloatTensorInfo(name, OnnxGraphBuilder.Dim("batch"), OnnxGraphBuilder.Dim(64 << stage),
                OnnxGraphBuilder.Dim($"{name}_height"), OnnxGraphBuilder.Dim($"{name}_width")));
        }
        graph.ValueInfo.Clear();                       // fixed 224×224 shapes of the original
        OnnxModelEditor.Prune(graph, "input");          // drops the pooling head
        graph.Name = "resnet18_imagenet_dnnimagefeaturizer";

        RaiseOpset(model, source);
        model.ProducerName = "Anomaly.Vision";
        model.ProducerVersion = typeof(ImageNetBackbones).Assembly.GetName().Version?.ToString() ?? "0";
        model.DocString = $"ImageNet ResNet-18 (3 blocks in layer4) of {ResNet18Description.Source}, converted to a feature extractor: " +
                          "input N×3×H×W normalised with the ImageNet mean and standard deviation (RGB), outputs layer1 to layer4.";
        model.MetadataProps.Clear();
        model.MetadataProps.Add(new StringStringEntryProto { Key = ResNetBackbones.ArchitectureMetadataKey, Value = ArchitectureName });
        OnnxModelEditor.SetDescription(model, ResNet18Description);
        return model.ToByteArray();
    }

    /// <summary>
    /// Raises a converted ResNet-18 that declares the package's opset 8 (as saved models made before the conversion
    /// declared <see cref="ConvertedOpset"/> hold it) to <see cref="ConvertedOpset"/>; any other model is left as it is.
    /// </summary>
    /// <param name="model">A backbone model, modified in place when it is such a conversion.</param>
    /// <returns>True when the model was raised.</returns>
    /// <exception cref="NotSupportedException">The model says it is the converted ResNet-18 but holds operators the conversion does not write.</exception>
    internal static bool RaiseLegacyOpset(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        bool converted = model.MetadataProps.Any(p => p.Key == ResNetBackbones.ArchitectureMetadataKey && p.Value == ArchitectureName);
        if (!converted || DefaultOpset(model) >= ConvertedOpset)
            return false;
        try
        {
            RaiseOpset(model, "the backbone");
        }
        catch (ArgumentException e)
        {
            throw new NotSupportedException($"The backbone is marked as the converted ImageNet ResNet-18 at opset {DefaultOpset(model)} but cannot be raised to opset {ConvertedOpset}: {e.Message}", e);
        }
        return true;
    }

    /// <summary>The opset of the default ONNX domain that <paramref name="model"/> imports (1 when it names none).</summary>
    internal static int DefaultOpset(ModelProto model) =>
        (int)(model.OpsetImport.FirstOrDefault(o => string.IsNullOrEmpty(o.Domain) || o.Domain == "ai.onnx")?.Version ?? 1);

    /// <summary>
    /// Makes the converted graph (opset 8) declare <see cref="ConvertedOpset"/>: drops BatchNormalization's <c>spatial</c>
    /// attribute, which must be 1, after checking that every operator is one whose meaning is the same at both opsets.
    /// </summary>
    private static void RaiseOpset(ModelProto model, string source)
    {
        GraphProto graph = model.Graph;
        if (model.OpsetImport.Any(o => !string.IsNullOrEmpty(o.Domain) && o.Domain != "ai.onnx"))
            throw new ArgumentException($"{source} imports operator sets other than the default ONNX domain.", "path");
        foreach (NodeProto node in graph.Node)
        {
            if (!ConvertedOperators.Contains(node.OpType) || !string.IsNullOrEmpty(node.Domain))
                throw new ArgumentException($"{source} holds operator {node.OpType} (node '{node.Name}'), which the conversion does not write.", "path");
            if (node.OpType != "BatchNormalization")
                continue;
            var spatial = node.Attribute.FirstOrDefault(a => a.Name == "spatial");
            if (spatial is not null && spatial.I != 1)
                throw new ArgumentException($"{source}: BatchNormalization node '{node.Name}' has spatial = {spatial.I}; only per-channel statistics (1) are supported.", "path");
            if (spatial is not null)
                node.Attribute.Remove(spatial);
        }
        model.OpsetImport.Clear();
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = ConvertedOpset });
        // Opset 13 comes with IR version 7 (initializers need not be graph inputs from IR version 4 on; the CNTK export says 3).
        model.IrVersion = Math.Max(model.IrVersion, 7);
    }

    private static NodeProto CheckIsResNet18(GraphProto graph, Dictionary<string, TensorProto> initializers, string source)
    {
        string Fail(string reason) =>
            $"{source} is not the ImageNet ResNet-18 of the NuGet package {ResNet18PackageId} {ResNet18PackageVersion} " +
            $"(DnnImageModels/ResNet18Onnx/ResNet18.onnx): {reason}";

        var inputs = graph.Input.Where(i => !initializers.ContainsKey(i.Name)).ToList();
        if (inputs.Count != 1 || inputs[0].Name != OriginalInput)
            throw new ArgumentException(Fail($"its image input is not '{OriginalInput}' (inputs: {string.Join(", ", inputs.Select(i => i.Name))})."), "path");
        var dims = inputs[0].Type?.TensorType?.Shape?.Dim;
        if (dims is null || dims.Count != 4 || dims[1].DimValue != 3 || dims[2].DimValue != OriginalSize || dims[3].DimValue != OriginalSize)
            throw new ArgumentException(Fail($"input '{OriginalInput}' is not 1×3×{OriginalSize}×{OriginalSize}."), "path");
        var produced = new HashSet<string>(graph.Node.SelectMany(n => n.Output), StringComparer.Ordinal);
        var missing = StageTensors.Where(t => !produced.Contains(t)).ToList();
        if (missing.Count > 0)
            throw new ArgumentException(Fail($"it has no stage tensor {string.Join(", ", missing)}."), "path");
        var convs = graph.Node.Where(n => n.OpType == "Conv").ToList();
        if (convs.Count != ConvolutionCount)
            throw new ArgumentException(Fail($"it has {convs.Count} convolutions, not {ConvolutionCount}."), "path");
        var consumers = graph.Node.Where(n => n.Input.Contains(OriginalInput)).ToList();
        if (consumers.Count != 1 || consumers[0].OpType != "Conv" || consumers[0].Input.Count < 2
            || !initializers.TryGetValue(consumers[0].Input[1], out var weight)
            || weight.DataType != (int)TensorProto.Types.DataType.Float || !weight.Dims.SequenceEqual([64L, 3, 7, 7]))
            throw new ArgumentException(Fail($"'{OriginalInput}' does not feed a single 7×7 convolution with 64×3×7×7 float weights."), "path");
        if (graph.Node.Any(n => n.Attribute.Any(a => a.Name == "auto_pad" && a.S.ToStringUtf8() is not ("" or "NOTSET"))))
            throw new ArgumentException(Fail("a node uses auto_pad."), "path");
        return consumers[0];
    }

    private static void MakePadsSymmetric(NodeProto node)
    {
        var pads = node.Attribute.FirstOrDefault(a => a.Name == "pads");
        if (pads is null || pads.Ints.Count != 4)
            return;
        pads.Ints[2] = pads.Ints[0];
        pads.Ints[3] = pads.Ints[1];
    }

    private static void WriteFloats(TensorProto tensor, float[] values)
    {
        tensor.FloatData.Clear();
        tensor.RawData = OnnxGraphBuilder.LittleEndianBytes(values);
    }
}
