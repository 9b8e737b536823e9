using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.Anomaly.Vision.Onnx;
using Microsoft.ML.Data;
using Microsoft.ML.Model.OnnxConverter;
using static Microsoft.ML.Anomaly.Vision.Export.OnnxGraphBuilder;

namespace Microsoft.ML.Anomaly.Vision.Export;

/// <summary>
/// Writes a fitted detector, whole, as one ONNX graph: the image tensor (RGB, 0–255, NCHW float at the fitted
/// size) is normalised with the ImageNet mean and deviation inside the graph, runs through the backbone's own
/// nodes (merged under new names) and through the detector's scoring head, which ends in <c>Score</c> and,
/// for detectors that make maps, <c>AnomalyMap</c>.
/// </summary>
/// <remarks>
/// Two ways out: <see cref="WriteFile"/> writes a model of its own (input <see cref="InputName"/>, outputs
/// <see cref="ScoreName"/> [N] and <see cref="MapName"/> [N, H, W]) at the backbone's opset, at least
/// <see cref="MinimumFileOpset"/>; <see cref="WriteToContext"/> replays the same graph into ML.NET's ONNX
/// converter (<c>mlContext.Model.ConvertToOnnx</c>), which writes opset 12. The backbone's operators are
/// checked to mean the same at the model's opset, so a graph that would score differently is never written.
/// </remarks>
internal static class DetectorOnnxExport
{
    /// <summary>The input of an exported file: batch × 3 × height × width RGB values in 0–255.</summary>
    public const string InputName = "image";

    /// <summary>The image scores of an exported file: one per image.</summary>
    public const string ScoreName = "Score";

    /// <summary>The anomaly maps of an exported file: batch × height × width.</summary>
    public const string MapName = "AnomalyMap";

    /// <summary>The lowest opset an exported file declares.</summary>
    public const int MinimumFileOpset = 13;

    /// <summary>The opset ML.NET's converter writes (its highest).</summary>
    public const int MlNetOpset = 12;

    private const string MlNetRemedy =
        "ML.NET's ConvertToOnnx writes opset 12; ExportToOnnx(path) writes the detector at the backbone's own opset.";

    /// <summary>Writes the detector's graph, in the detector's opset, to <paramref name="path"/> atomically (a temporary file beside it, then a rename).</summary>
    public static void WriteFile(BackboneAnomalyTransformerBase detector, string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ModelProto model = BuildFileModel(detector);
        AtomicFile.Write(path, model.WriteTo);
    }

    /// <summary>The detector as a stand-alone ONNX model (see the class remarks).</summary>
    public static ModelProto BuildFileModel(BackboneAnomalyTransformerBase detector)
    {
        ModelProto backbone = ParseBackbone(detector);
        int opset = Math.Max(DefaultOpset(backbone), MinimumFileOpset);
        var graph = new OnnxGraphBuilder(opset, detector.GetType().Name);
        graph.Reserve(InputName);
        var (score, map) = WriteDetector(detector, graph, backbone, InputName, remedy: "");

        GraphProto g = graph.Graph;
        g.Name = detector.GetType().Name;
        // A backbone exported for a fixed batch size may have it built into its constants: keep it fixed.
        long fixedBatch = FixedBatch(backbone);
        var batch = fixedBatch > 0 ? Dim(fixedBatch) : Dim("batch");
        g.Input.Add(FloatTensorInfo(InputName, batch, Dim(3), Dim(detector.InputHeight), Dim(detector.InputWidth)));
        g.Node.Add(new NodeProto { Name = ScoreName, OpType = "Identity", Input = { score }, Output = { ScoreName } });
        g.Output.Add(FloatTensorInfo(ScoreName, batch.Clone()));
        if (map is not null)
        {
            g.Node.Add(new NodeProto { Name = MapName, OpType = "Identity", Input = { map }, Output = { MapName } });
            g.Output.Add(FloatTensorInfo(MapName, batch.Clone(), Dim(detector.InputHeight), Dim(detector.InputWidth)));
        }

        var model = new ModelProto
        {
            IrVersion = Math.Max(backbone.IrVersion, 7),
            ProducerName = "Anomaly.Vision",
            ProducerVersion = typeof(DetectorOnnxExport).Assembly.GetName().Version?.ToString() ?? "0",
            DocString = $"{detector.GetType().Name} exported whole: input '{InputName}' is batch×3×{detector.InputHeight}×{detector.InputWidth} RGB " +
                        $"values in 0–255 (ImageNet normalisation is inside the graph); outputs '{ScoreName}' [batch]" +
                        (map is null ? "." : $" and '{MapName}' [batch, {detector.InputHeight}, {detector.InputWidth}]."),
            Graph = g,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        model.MetadataProps.AddRange(backbone.MetadataProps.Where(p => p.Key == OnnxModelEditor.UntrainedMetadataKey));
        return model;
    }

    /// <summary>
    /// Writes an image as the exported graph's input expects it: 3 × height × width floats, R, G and B planes, values
    /// 0–255 (no resizing: the image must already be at the detector's size).
    /// </summary>
    public static void WriteInput(MLImage image, Span<float> destination)
    {
        int[] channel = image.PixelFormat switch
        {
            MLPixelFormat.Bgra32 => [2, 1, 0],
            MLPixelFormat.Rgba32 => [0, 1, 2],
            var other => throw new ArgumentException($"Images with pixel format {other} are not supported; BGRA32 or RGBA32 is required.", nameof(image)),
        };
        int plane = image.Width * image.Height;
        ReadOnlySpan<byte> pixels = image.Pixels;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < plane; p++)
                destination[c * plane + p] = pixels[4 * p + channel[c]];
    }

    /// <summary>
    /// Replays the detector's graph into ML.NET's ONNX converter: the input column becomes a graph input holding
    /// the image tensor, and the score, map and predicted-label columns are written as ML.NET declares them.
    /// </summary>
    public static void WriteToContext(BackboneAnomalyTransformerBase detector, OnnxContext ctx)
    {
        string name = detector.GetType().Name;
        ctx.CheckOpSetVersion(MlNetOpset, name);
        if (ctx is not OnnxContextImpl context)
            throw new NotSupportedException($"{name} exports only through ML.NET's own ONNX converter (mlContext.Model.ConvertToOnnx).");
        ModelProto backbone = ParseBackbone(detector);
        if (FixedBatch(backbone) is long fixedBatch and > 0)
            throw new NotSupportedException(
                $"The backbone takes batches of exactly {fixedBatch} images, but ML.NET's converter declares a free batch size; use ExportToOnnx(path), which keeps it fixed.");
        string column = detector.InputColumnName;
        if (!ctx.ContainsColumn(column))
            throw new InvalidOperationException(
                $"{name} reads column '{column}', which a transform that cannot be exported to ONNX makes (ML.NET's LoadImages and ResizeImages cannot). " +
                $"Export the detector on its own: ConvertToOnnx(detector, data holding '{column}', stream, \"{detector.ScoreColumnName}\", ...) or detector.ExportToOnnx(path); " +
                "its graph takes the decoded image as a tensor.");
        try
        {
            ctx.RemoveInputVariable(column);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(
                $"{name} reads column '{column}', which another step of the pipeline computes; in ONNX the detector's input must be the pipeline's input (the image tensor).", e);
        }
        context.AddInputVariable(new VectorDataViewType(NumberDataViewType.Single, 3, detector.InputHeight, detector.InputWidth), column);
        string image = ctx.GetVariableName(column);

        var graph = new OnnxGraphBuilder(MlNetOpset, name);
        string graphInput = graph.Name("image");
        var (score, map) = WriteDetector(detector, graph, backbone, graphInput, MlNetRemedy);

        var names = new Dictionary<string, string>(StringComparer.Ordinal) { [graphInput] = image, [""] = "" };
        foreach (TensorProto tensor in graph.Graph.Initializer)
            names[tensor.Name] = AddInitializer(ctx, tensor);
        foreach (NodeProto node in graph.Graph.Node)
            Replay(ctx, node, names);

        // The text column no longer exists as such: it is the image tensor now.
        ctx.RemoveColumn(column);
        string scoreColumn = ctx.AddIntermediateVariable(NumberDataViewType.Single, detector.ScoreColumnName);
        ctx.CreateNode("Reshape", [names[score], ctx.AddInitializer(new long[] { -1, 1 }, new long[] { 2 }, "score_shape")], [scoreColumn], ctx.GetNodeName("Reshape"), "");
        if (map is not null && detector.AnomalyMapColumnName is string mapName)
        {
            string mapColumn = ctx.AddIntermediateVariable(new VectorDataViewType(NumberDataViewType.Single, detector.InputHeight, detector.InputWidth), mapName);
            ctx.CreateNode("Identity", names[map], mapColumn, ctx.GetNodeName("Identity"), "");
        }
        if (detector.Threshold is float threshold)
        {
            string labelColumn = ctx.AddIntermediateVariable(BooleanDataViewType.Instance, detector.PredictedLabelColumnName);
            ctx.CreateNode("GreaterOrEqual", [scoreColumn, ctx.AddInitializer(threshold, "threshold")], [labelColumn], ctx.GetNodeName("GreaterOrEqual"), "");
        }
    }

    /// <summary>Normalisation, backbone and head into <paramref name="graph"/>; returns the score and map tensors.</summary>
    private static (string Score, string? Map) WriteDetector(BackboneAnomalyTransformerBase detector, OnnxGraphBuilder graph,
        ModelProto backbone, string image, string remedy)
    {
        OnnxOpsetCompatibility.Check(backbone.Graph, DefaultOpset(backbone), graph.Opset, remedy);
        string normalised = Normalise(graph, image);
        IReadOnlyList<string> layers = MergeBackbone(graph, backbone, detector.BackboneForExport.LayerTensors, normalised);
        return detector.WriteOnnxHead(graph, layers);
    }

    /// <summary>(x / 255 − mean) / std per channel, written as ImageTensorConverter computes it: x · scale − shift.</summary>
    private static string Normalise(OnnxGraphBuilder graph, string image)
    {
        ReadOnlySpan<float> mean = ImageTensorConverter.Mean, std = ImageTensorConverter.StandardDeviation;
        var scale = new float[3];
        var shift = new float[3];
        for (int c = 0; c < 3; c++)
        {
            scale[c] = 1f / (255f * std[c]);
            shift[c] = mean[c] / std[c];
        }
        return graph.Sub(graph.Mul(image, graph.Floats("scale", scale, 1, 3, 1, 1)), graph.Floats("shift", shift, 1, 3, 1, 1));
    }

    /// <summary>Copies the backbone's nodes and constants under new names, fed by <paramref name="image"/>; returns the layer tensors' new names.</summary>
    private static IReadOnlyList<string> MergeBackbone(OnnxGraphBuilder graph, ModelProto backbone, IReadOnlyList<string> layerTensors, string image)
    {
        GraphProto source = backbone.Graph;
        var initializers = new HashSet<string>(source.Initializer.Select(t => t.Name), StringComparer.Ordinal);
        string input = source.Input.Single(i => !initializers.Contains(i.Name)).Name;
        var names = new Dictionary<string, string>(StringComparer.Ordinal) { [input] = image, [""] = "" };
        string Rename(string name)
        {
            if (!names.TryGetValue(name, out string? renamed))
                names[name] = renamed = graph.Name("backbone/" + name);
            return renamed;
        }

        foreach (TensorProto tensor in source.Initializer)
        {
            TensorProto copy = tensor.Clone();
            copy.Name = Rename(tensor.Name);
            graph.Graph.Initializer.Add(copy);
        }
        foreach (NodeProto node in source.Node)
        {
            NodeProto copy = node.Clone();
            copy.Name = graph.Name("backbone/" + node.OpType);
            copy.Input.Clear();
            copy.Input.AddRange(node.Input.Select(Rename));
            copy.Output.Clear();
            copy.Output.AddRange(node.Output.Select(Rename));
            graph.Graph.Node.Add(copy);
        }
        return layerTensors.Select(t => names[t]).ToArray();
    }

    /// <summary>The batch size the backbone's image input fixes, or 0 when it is free.</summary>
    private static long FixedBatch(ModelProto backbone)
    {
        var initializers = new HashSet<string>(backbone.Graph.Initializer.Select(t => t.Name), StringComparer.Ordinal);
        var dims = backbone.Graph.Input.Single(i => !initializers.Contains(i.Name)).Type?.TensorType?.Shape?.Dim;
        return dims is { Count: > 0 } && dims[0].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? dims[0].DimValue : 0;
    }

    private static int DefaultOpset(ModelProto model) => ImageNetBackbones.DefaultOpset(model);

    /// <summary>The backbone graph the export merges: the detector's edited backbone, raised to the converted opset when it is an earlier ImageNet conversion.</summary>
    private static ModelProto ParseBackbone(BackboneAnomalyTransformerBase detector)
    {
        ModelProto backbone = ModelProto.Parser.ParseFrom(detector.BackboneForExport.EditedModelBytes);
        ImageNetBackbones.RaiseLegacyOpset(backbone);
        return backbone;
    }

    /// <summary>Adds one constant to ML.NET's context; returns its name there.</summary>
    private static string AddInitializer(OnnxContext ctx, TensorProto tensor)
    {
        long[] dims = [.. tensor.Dims];
        switch ((TensorProto.Types.DataType)tensor.DataType)
        {
            case TensorProto.Types.DataType.Float:
                float[] floats = ReadFloats(tensor);
                return dims.Length == 0 ? ctx.AddInitializer(floats[0], tensor.Name) : ctx.AddInitializer(floats, dims, tensor.Name);
            case TensorProto.Types.DataType.Int64:
                long[] longs = tensor.RawData.Length > 0 ? MemoryMarshal.Cast<byte, long>(tensor.RawData.Span).ToArray() : [.. tensor.Int64Data];
                return dims.Length == 0 ? ctx.AddInitializer(longs[0], tensor.Name) : ctx.AddInitializer(longs, dims, tensor.Name);
            default:
                throw new NotSupportedException(
                    $"Constant '{tensor.Name}' has element type {(TensorProto.Types.DataType)tensor.DataType}; the ML.NET export carries float and int64 constants only.");
        }
    }

    /// <summary>Adds one node to ML.NET's context, renaming its tensors; a Constant node becomes a constant tensor.</summary>
    private static void Replay(OnnxContext ctx, NodeProto node, Dictionary<string, string> names)
    {
        if (node.OpType == "Constant" && node.Attribute.Count == 1 && node.Attribute[0].T is TensorProto value)
        {
            TensorProto named = value.Clone();
            named.Name = node.Output[0];
            names[node.Output[0]] = AddInitializer(ctx, named);
            return;
        }
        string[] inputs = node.Input.Select(i => names[i]).ToArray();
        string[] outputs = node.Output.Select(o => names[o] = o.Length == 0 ? "" : ctx.AddIntermediateVariable(null, o, skip: true)).ToArray();
        OnnxNode replayed = ctx.CreateNode(node.OpType, inputs, outputs, ctx.GetNodeName(node.OpType), node.Domain ?? "");
        foreach (AttributeProto attribute in node.Attribute)
        {
            switch (attribute.Type)
            {
                case AttributeProto.Types.AttributeType.Float:
                    replayed.AddAttribute(attribute.Name, (double)attribute.F);
                    break;
                case AttributeProto.Types.AttributeType.Int:
                    replayed.AddAttribute(attribute.Name, attribute.I);
                    break;
                case AttributeProto.Types.AttributeType.String:
                    replayed.AddAttribute(attribute.Name, attribute.S.ToStringUtf8());
                    break;
                case AttributeProto.Types.AttributeType.Floats:
                    replayed.AddAttribute(attribute.Name, (IEnumerable<float>)attribute.Floats);
                    break;
                case AttributeProto.Types.AttributeType.Ints:
                    replayed.AddAttribute(attribute.Name, (IEnumerable<long>)attribute.Ints);
                    break;
                default:
                    throw new NotSupportedException(
                        $"Operator {node.OpType} has attribute '{attribute.Name}' of kind {attribute.Type}, which ML.NET's ONNX converter cannot write; use ExportToOnnx(path).");
            }
        }
    }
}
