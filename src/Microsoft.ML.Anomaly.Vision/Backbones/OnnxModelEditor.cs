using Google.Protobuf;
using Microsoft.ML.Anomaly.Vision.Onnx;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Reads an ONNX model, finds the tensors that hold the requested backbone layers and rewrites the graph
/// so that exactly those tensors are its outputs (nodes that no longer contribute to them are dropped).
/// </summary>
internal static class OnnxModelEditor
{
    /// <summary>Metadata key that marks a model whose weights are random.</summary>
    public const string UntrainedMetadataKey = "anomaly_vision.untrained";

    /// <summary>Metadata key holding the backbone's name (<see cref="BackboneDescription.Name"/>).</summary>
    public const string NameMetadataKey = "anomaly_vision.backbone_name";

    /// <summary>Metadata key holding where the backbone's weights come from (<see cref="BackboneDescription.Source"/>).</summary>
    public const string SourceMetadataKey = "anomaly_vision.backbone_source";

    /// <summary>The result of preparing a model: the edited bytes and what the backbone needs to run it.</summary>
    /// <param name="EditedModel">The serialized model whose outputs are <paramref name="OutputTensors"/>.</param>
    /// <param name="OutputTensors">Tensor name of each requested layer, in the order of the request.</param>
    /// <param name="InputName">Name of the image input.</param>
    /// <param name="FixedBatch">The batch size the model requires, or 0 when it is free.</param>
    /// <param name="FixedHeight">The image height the model requires, or 0 when it is free.</param>
    /// <param name="FixedWidth">The image width the model requires, or 0 when it is free.</param>
    /// <param name="Description">The backbone's name and source from the model's metadata; pretrained unless marked untrained.</param>
    public sealed record Prepared(byte[] EditedModel, string[] OutputTensors, string InputName,
        long FixedBatch, long FixedHeight, long FixedWidth, BackboneDescription Description);

    /// <summary>Writes <paramref name="description"/> into the model's metadata (name, source, untrained mark).</summary>
    public static void SetDescription(ModelProto model, BackboneDescription description)
    {
        model.MetadataProps.Add(new StringStringEntryProto { Key = NameMetadataKey, Value = description.Name });
        model.MetadataProps.Add(new StringStringEntryProto { Key = SourceMetadataKey, Value = description.Source });
        if (!description.IsPretrained)
            model.MetadataProps.Add(new StringStringEntryProto { Key = UntrainedMetadataKey, Value = "true" });
    }

    /// <summary>Parses ONNX bytes; anything that is not an ONNX model gives an <see cref="ArgumentException"/>.</summary>
    /// <param name="bytes">The serialized model.</param>
    /// <param name="source">Where the bytes came from, for messages ("the model bytes" or a path).</param>
    /// <param name="paramName">Parameter name for the exception.</param>
    public static ModelProto Parse(byte[] bytes, string source, string paramName)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ArgumentException($"{source} is not an ONNX model: it cannot be read as an ONNX protobuf ({e.Message}).", paramName, e);
        }
        if (!model.HasIrVersion || model.IrVersion <= 0 || model.Graph is null || model.Graph.Node.Count == 0
            || model.OpsetImport.Count == 0)
        {
            throw new ArgumentException(
                $"{source} is not an ONNX model: it has no IR version, operator set or graph nodes.", paramName);
        }
        RefuseExternalData(model, source, paramName);
        return model;
    }

    /// <summary>
    /// Refuses a model that keeps any tensor in an external data file, wherever the tensor is: initializers, sparse
    /// initializers, tensor attributes (Constant's value and others, dense or sparse), subgraphs of If, Loop and Scan at
    /// any depth, local functions and training graphs. ONNX Runtime would open the named file, relative to a folder that
    /// bytes in memory do not have, so such a model must not reach it.
    /// </summary>
    private static void RefuseExternalData(ModelProto model, string source, string paramName)
    {
        void Tensor(TensorProto? tensor, string where)
        {
            if (tensor is null || (tensor.DataLocation != TensorProto.Types.DataLocation.External && tensor.ExternalData.Count == 0))
                return;
            string name = string.IsNullOrEmpty(tensor.Name) ? "" : $"'{tensor.Name}' ";
            string? file = tensor.ExternalData.FirstOrDefault(e => e.Key == "location")?.Value;
            throw new ArgumentException(
                $"{source} keeps tensor {name}({where}) in an external data file{(file is null ? "" : $" ('{file}')")}; external data is refused " +
                "wherever it is. Save the model with its weights inside the .onnx file (onnx.save(model, path, save_as_external_data=False)).", paramName);
        }
        void Sparse(SparseTensorProto? sparse, string where)
        {
            if (sparse is null)
                return;
            Tensor(sparse.Values, where + ", sparse values");
            Tensor(sparse.Indices, where + ", sparse indices");
        }
        void Attribute(AttributeProto attribute, string where)
        {
            where = $"attribute '{attribute.Name}' of {where}";
            Tensor(attribute.T, where);
            foreach (TensorProto t in attribute.Tensors)
                Tensor(t, where);
            Sparse(attribute.SparseTensor, where);
            foreach (SparseTensorProto t in attribute.SparseTensors)
                Sparse(t, where);
            if (attribute.G is not null)
                Graph(attribute.G, $"the subgraph in {where}");
            foreach (GraphProto g in attribute.Graphs)
                Graph(g, $"a subgraph in {where}");
        }
        void Nodes(IEnumerable<NodeProto> nodes, string where)
        {
            foreach (NodeProto node in nodes)
                foreach (AttributeProto attribute in node.Attribute)
                    Attribute(attribute, $"{node.OpType} node '{node.Name}' in {where}");
        }
        void Graph(GraphProto? graph, string where)
        {
            if (graph is null)
                return;
            foreach (TensorProto t in graph.Initializer)
                Tensor(t, $"an initializer of {where}");
            foreach (SparseTensorProto t in graph.SparseInitializer)
                Sparse(t, $"a sparse initializer of {where}");
            Nodes(graph.Node, where);
        }

        Graph(model.Graph, "the main graph");
        foreach (FunctionProto function in model.Functions)
        {
            string where = $"function '{function.Name}'";
            Nodes(function.Node, where);
            foreach (AttributeProto attribute in function.AttributeProto)
                Attribute(attribute, where);
        }
        foreach (TrainingInfoProto training in model.TrainingInfo)
        {
            Graph(training.Initialization, "the training initialization graph");
            Graph(training.Algorithm, "the training algorithm graph");
        }
    }

    /// <summary>Resolves <paramref name="layers"/> to tensors, makes them the graph outputs and checks the image input.</summary>
    /// <param name="model">The parsed model; it is modified.</param>
    /// <param name="layers">Requested layers: graph output names, module names such as <c>layer2</c>, or tensor names.</param>
    /// <param name="source">Where the model came from, for messages.</param>
    public static Prepared Prepare(ModelProto model, IReadOnlyList<string> layers, string source)
    {
        GraphProto graph = model.Graph;
        var initializers = new HashSet<string>(graph.Initializer.Select(t => t.Name), StringComparer.Ordinal);

        var imageInputs = graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        if (imageInputs.Count != 1)
        {
            throw new ArgumentException(
                $"{source} has {imageInputs.Count} inputs ({string.Join(", ", imageInputs.Select(i => i.Name))}); " +
                "a backbone must take exactly one input, the image batch N×3×H×W.", nameof(model));
        }
        ValueInfoProto input = imageInputs[0];
        var (fixedBatch, fixedHeight, fixedWidth) = CheckImageInput(input, source);

        string[] tensors = new string[layers.Count];
        for (int i = 0; i < layers.Count; i++)
            tensors[i] = Resolve(graph, layers[i], source);

        // The requested tensors become the only outputs; keep a declared output's type when there is one.
        var declared = graph.Output.ToDictionary(o => o.Name, o => o, StringComparer.Ordinal);
        graph.Output.Clear();
        foreach (string name in tensors.Distinct(StringComparer.Ordinal))
        {
            graph.Output.Add(declared.TryGetValue(name, out var info)
                ? info
                : new ValueInfoProto
                {
                    Name = name,
                    Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
                });
        }
        Prune(graph, input.Name);

        return new Prepared(model.ToByteArray(), tensors, input.Name, fixedBatch, fixedHeight, fixedWidth, ReadDescription(model, source));
    }

    /// <summary>The description in the model's metadata; a model without one is named by its graph and <paramref name="source"/>.</summary>
    private static BackboneDescription ReadDescription(ModelProto model, string source)
    {
        string? Metadata(string key) => model.MetadataProps.FirstOrDefault(p => p.Key == key)?.Value;
        bool untrained = string.Equals(Metadata(UntrainedMetadataKey), "true", StringComparison.OrdinalIgnoreCase);
        string name = Metadata(NameMetadataKey) ?? Metadata(ResNetBackbones.ArchitectureMetadataKey)
            ?? (string.IsNullOrEmpty(model.Graph.Name) ? "ONNX model" : $"ONNX model '{model.Graph.Name}'");
        return new BackboneDescription(name, Metadata(SourceMetadataKey) ?? source, !untrained);
    }

    private static (long Batch, long Height, long Width) CheckImageInput(ValueInfoProto input, string source)
    {
        var tensorType = input.Type?.TensorType;
        if (tensorType is null)
            throw new ArgumentException($"{source}: input '{input.Name}' is not a tensor; a backbone takes a float tensor N×3×H×W.", "model");
        if (tensorType.HasElemType && tensorType.ElemType != (int)TensorProto.Types.DataType.Float)
        {
            throw new ArgumentException(
                $"{source}: input '{input.Name}' has element type {(TensorProto.Types.DataType)tensorType.ElemType}; a backbone takes float32 images.", "model");
        }
        if (tensorType.Shape is null)
            return (0, 0, 0);
        var dims = tensorType.Shape.Dim;
        if (dims.Count != 4)
        {
            throw new ArgumentException(
                $"{source}: input '{input.Name}' has {dims.Count} dimensions; a backbone takes a 4-D image batch N×3×H×W.", "model");
        }
        long Fixed(int i) => dims[i].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && dims[i].DimValue > 0 ? dims[i].DimValue : 0;
        long channels = Fixed(1);
        if (channels != 0 && channels != 3)
        {
            throw new ArgumentException(
                $"{source}: input '{input.Name}' has {channels} channels; a backbone takes 3-channel (RGB) images N×3×H×W.", "model");
        }
        return (Fixed(0), Fixed(2), Fixed(3));
    }

    private static string Resolve(GraphProto graph, string layer, string source)
    {
        if (string.IsNullOrWhiteSpace(layer))
            throw new ArgumentException("Layer names must not be empty.", "layers");

        // 1. A graph output of that name.
        if (graph.Output.Any(o => o.Name == layer))
            return layer;

        // 2. A module name: the output of the last node in that module's scope, as the TorchScript-based
        //    exporter writes scopes ("/layer1/layer1.1/relu_1/Relu").
        string prefix = "/" + layer + "/";
        for (int n = graph.Node.Count - 1; n >= 0; n--)
        {
            var node = graph.Node[n];
            if (node.Name.StartsWith(prefix, StringComparison.Ordinal) && node.Output.Count > 0)
                return node.Output[0];
        }

        // 3. Any tensor a node produces.
        foreach (var node in graph.Node)
            if (node.Output.Contains(layer))
                return layer;

        var scopes = graph.Node
            .Select(n => n.Name)
            .Where(n => n.StartsWith('/') && n.IndexOf('/', 1) > 1)
            .Select(n => n.Substring(1, n.IndexOf('/', 1) - 1))
            .Distinct(StringComparer.Ordinal)
            .ToList();
        string scopeText = scopes.Count > 0
            ? $" Module scopes found in node names: {string.Join(", ", scopes)}."
            : " No node carries a module scope in its name.";
        throw new ArgumentException(
            $"Layer '{layer}' was not found in {source}. Graph outputs: {string.Join(", ", graph.Output.Select(o => o.Name))}.{scopeText} " +
            "A layer may be named by a graph output, by a module name such as 'layer2' (resolved from the module scopes that " +
            "torch.onnx.export writes into node names with dynamo=False), or by any tensor name in the graph. The dynamo " +
            "exporter, the default since PyTorch 2.9, names nodes val_N without module scopes: export with " +
            "output_names naming the layers you need, or with dynamo=False.",
            "layers");
    }

    /// <summary>Drops nodes, initializers and value infos that the outputs do not need.</summary>
    public static void Prune(GraphProto graph, string inputName)
    {
        // Nodes with subgraphs may use outer values implicitly; leave such graphs alone.
        if (graph.Node.Any(n => n.Attribute.Any(a => a.G is not null || a.Graphs.Count > 0)))
            return;

        var needed = new HashSet<string>(graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        var keep = new bool[graph.Node.Count];
        for (int i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (!node.Output.Any(needed.Contains))
                continue;
            keep[i] = true;
            foreach (string x in node.Input)
                if (x.Length > 0)
                    needed.Add(x);
        }
        var nodes = graph.Node.Where((_, i) => keep[i]).ToList();
        graph.Node.Clear();
        graph.Node.AddRange(nodes);

        var produced = new HashSet<string>(nodes.SelectMany(n => n.Output), StringComparer.Ordinal);
        var initializers = graph.Initializer.Where(t => needed.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(initializers);

        var inputs = graph.Input.Where(i => i.Name == inputName || needed.Contains(i.Name)).ToList();
        graph.Input.Clear();
        graph.Input.AddRange(inputs);

        var infos = graph.ValueInfo.Where(v => produced.Contains(v.Name)).ToList();
        graph.ValueInfo.Clear();
        graph.ValueInfo.AddRange(infos);
    }
}
