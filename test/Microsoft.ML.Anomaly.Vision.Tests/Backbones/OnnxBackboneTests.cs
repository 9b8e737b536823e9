using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Export;
using Microsoft.ML.Anomaly.Vision.Onnx;

namespace Microsoft.ML.Anomaly.Vision.Tests.Backbones;

[TestClass]
public sealed class OnnxBackboneTests
{
    private const int Size = 32;

    [TestMethod]
    public void FriendlyNames_ResolveOnLegacyExportWithoutLayerOutputs()
    {
        // Simulate torch.onnx.export(dynamo=False) without output_names: the layer tensors carry the
        // exporter's generated names and only the last tensor is a graph output.
        ModelProto model = BackboneTestModels.Parse(BackboneTestModels.UntrainedResNet18);
        var rename = new Dictionary<string, string>();
        for (int k = 1; k <= 4; k++)
            rename[$"layer{k}"] = $"/layer{k}/layer{k}.1/relu_1/Relu_output_0";
        foreach (var node in model.Graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
                if (rename.TryGetValue(node.Input[i], out var n)) node.Input[i] = n;
            for (int i = 0; i < node.Output.Count; i++)
                if (rename.TryGetValue(node.Output[i], out var n)) node.Output[i] = n;
        }
        model.Graph.Output.Clear();
        model.Graph.Output.Add(new ValueInfoProto
        {
            Name = rename["layer4"],
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1 } },
        });
        byte[] legacy = BackboneTestModels.Serialize(model);
        float[] images = BackboneTestModels.RandomImages(3 * Size * Size, seed: 2);

        using var exported = OnnxBackbone.FromBytes(legacy, new[] { "layer2", "layer3" }, preferCuda: false);
        using var reference = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18, new[] { "layer2", "layer3" }, preferCuda: false);

        CollectionAssert.AreEqual(
            new[] { "/layer2/layer2.1/relu_1/Relu_output_0", "/layer3/layer3.1/relu_1/Relu_output_0" },
            exported.LayerTensors.ToArray());
        CollectionAssert.AreEqual(new[] { "layer2", "layer3" }, reference.LayerTensors.ToArray());
        var a = exported.Run(images, 1, Size, Size);
        var b = reference.Run(images, 1, Size, Size);
        Assert.AreEqual(128 * 4 * 4, a[0].Length);
        CollectionAssert.AreEqual(b[0], a[0]);
        CollectionAssert.AreEqual(b[1], a[1]);
    }

    [TestMethod]
    [DataRow("initializer")]
    [DataRow("constant")]
    [DataRow("subgraph")]
    [DataRow("sparse-initializer")]
    [DataRow("function")]
    public void ExternalDataAnywhereInTheModelIsRefusedBeforeOnnxRuntimeSeesIt(string where)
    {
        // A tensor whose data lives in an external file named like a file the application keeps in its working folder.
        var secret = new TensorProto { Name = "secret", DataType = (int)TensorProto.Types.DataType.Float, DataLocation = TensorProto.Types.DataLocation.External };
        secret.Dims.Add(1);
        secret.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "appsettings.json" });
        ModelProto model = TinyBackbone();
        GraphProto graph = model.Graph;
        NodeProto Constant(string output) => new()
        {
            Name = "offset", OpType = "Constant", Output = { output },
            Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = secret } },
        };
        switch (where)
        {
            case "initializer":
                graph.Initializer.Add(secret);
                graph.Node.Insert(0, new NodeProto { Name = "shift", OpType = "Add", Input = { "input", "secret" }, Output = { "shifted" } });
                break;
            case "constant":
                graph.Node.Insert(0, Constant("offset"));
                graph.Node.Insert(1, new NodeProto { Name = "shift", OpType = "Add", Input = { "input", "offset" }, Output = { "shifted" } });
                break;
            case "subgraph":
                var branch = new GraphProto { Name = "then", Node = { Constant("branch_offset") }, Output = { OnnxGraphBuilder.FloatTensorInfo("branch_offset") } };
                var orElse = new GraphProto { Name = "else", Node = { new NodeProto { OpType = "Identity", Input = { "zero" }, Output = { "else_offset" } } }, Output = { OnnxGraphBuilder.FloatTensorInfo("else_offset") } };
                graph.Initializer.Add(FloatTensor("zero", [1], 0f));
                graph.Initializer.Add(new TensorProto { Name = "flag", DataType = (int)TensorProto.Types.DataType.Bool, Int32Data = { 1 } });
                graph.Node.Insert(0, new NodeProto
                {
                    Name = "choose", OpType = "If", Input = { "flag" }, Output = { "offset" },
                    Attribute =
                    {
                        new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = branch },
                        new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = orElse },
                    },
                });
                graph.Node.Insert(1, new NodeProto { Name = "shift", OpType = "Add", Input = { "input", "offset" }, Output = { "shifted" } });
                break;
            case "sparse-initializer":
                var indices = new TensorProto { Name = "secret_indices", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 1 }, Int64Data = { 0 } };
                graph.SparseInitializer.Add(new SparseTensorProto { Values = secret, Indices = indices, Dims = { 1 } });
                graph.Node.Insert(0, new NodeProto { Name = "shift", OpType = "Add", Input = { "input", "secret" }, Output = { "shifted" } });
                break;
            case "function":
                model.OpsetImport.Add(new OperatorSetIdProto { Domain = "local", Version = 1 });
                model.Functions.Add(new FunctionProto { Name = "Shift", Domain = "local", Node = { Constant("offset") } });
                graph.Node.Insert(0, new NodeProto { Name = "shift", OpType = "Add", Input = { "input", "zero" }, Output = { "shifted" } });
                graph.Initializer.Add(FloatTensor("zero", [1], 0f));
                break;
        }
        byte[] bytes = BackboneTestModels.Serialize(model);

        var error = Assert.ThrowsExactly<ArgumentException>(() => OnnxBackbone.FromBytes(bytes, ["layer1"], preferCuda: false), where);
        StringAssert.Contains(error.Message, "tensor 'secret'", where);
        StringAssert.Contains(error.Message, "external data file ('appsettings.json')", where);
        Assert.IsNull(error.InnerException, $"{where}: refused by the library, not by ONNX Runtime");
    }

    /// <summary>A one-convolution backbone: input N×3×H×W, 'shifted' = input, 'layer1' = Conv(shifted) with 4 channels.</summary>
    private static ModelProto TinyBackbone()
    {
        var model = new ModelProto { IrVersion = 8, Graph = new GraphProto { Name = "tiny" } };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        GraphProto graph = model.Graph;
        graph.Input.Add(OnnxGraphBuilder.FloatTensorInfo("input", OnnxGraphBuilder.Dim("batch"), OnnxGraphBuilder.Dim(3), OnnxGraphBuilder.Dim("height"), OnnxGraphBuilder.Dim("width")));
        graph.Initializer.Add(FloatTensor("weight", [4, 3, 1, 1], 0.5f));
        graph.Node.Add(new NodeProto { Name = "conv", OpType = "Conv", Input = { "shifted", "weight" }, Output = { "layer1" } });
        graph.Output.Add(OnnxGraphBuilder.FloatTensorInfo("layer1"));
        return model;
    }

    private static TensorProto FloatTensor(string name, long[] dims, float value)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims);
        tensor.FloatData.AddRange(Enumerable.Repeat(value, (int)dims.Aggregate(1L, (a, b) => a * b)));
        return tensor;
    }

    [TestMethod]
    public void RawTensorNames_Work()
    {
        using var backbone = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18,
            new[] { "/maxpool/MaxPool_output_0", "/layer2/layer2.0/relu/Relu_output_0" }, preferCuda: false);

        var shapes = backbone.GetLayerShapes(64, 64);

        // maxpool: stride 4 in all → 64×16×16; layer2.0's first ReLU follows the stride-2 conv1 → 128×8×8.
        CollectionAssert.AreEqual(new[] { new LayerShape(64, 16, 16), new LayerShape(128, 8, 8) }, shapes.ToArray());
    }

    [TestMethod]
    public void UnknownLayer_ListsAvailableNames()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18, new[] { "layer1", "layer5" }, preferCuda: false));

        Assert.AreEqual("layers", e.ParamName);
        StringAssert.Contains(e.Message, "'layer5'");
        StringAssert.Contains(e.Message, "layer1, layer2, layer3, layer4");
        StringAssert.Contains(e.Message, "conv1, bn1, relu, maxpool, layer1");
        StringAssert.Contains(e.Message, "dynamo=False");
        StringAssert.Contains(e.Message, "output_names");
    }

    [TestMethod]
    public void Load_MissingFile_NamesThePath()
    {
        string path = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"), "backbone.onnx");

        var e = Assert.ThrowsExactly<FileNotFoundException>(() => OnnxBackbone.Load(path, new[] { "layer1" }));

        StringAssert.Contains(e.Message, path);
        Assert.AreEqual(path, e.FileName);
    }

    [TestMethod]
    public void Load_FileThatIsNotOnnx_SaysSo()
    {
        string path = Path.Combine(Path.GetTempPath(), "not-onnx-" + Guid.NewGuid().ToString("N") + ".onnx");
        File.WriteAllText(path, "This is a text file, not a neural network.");
        try
        {
            var e = Assert.ThrowsExactly<ArgumentException>(() => OnnxBackbone.Load(path, new[] { "layer1" }));
            StringAssert.Contains(e.Message, path);
            StringAssert.Contains(e.Message, "is not an ONNX model");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void Load_ReadsTheFile()
    {
        string path = Path.Combine(Path.GetTempPath(), "resnet18-" + Guid.NewGuid().ToString("N") + ".onnx");
        File.WriteAllBytes(path, BackboneTestModels.UntrainedResNet18);
        try
        {
            using var backbone = OnnxBackbone.Load(path, new[] { "layer1" }, intraOpThreads: 1, preferCuda: false);
            Assert.IsTrue(BackboneTestModels.UntrainedResNet18.AsSpan().SequenceEqual(backbone.ModelBytes));
            Assert.AreEqual(new LayerShape(64, 8, 8), backbone.GetLayerShapes(Size, Size).Single());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void FixedSizeModel_WrongInputSize_NamesExpectedSize()
    {
        byte[] fixedModel = WithInputDims(1, 3, 64, 64);
        using var backbone = OnnxBackbone.FromBytes(fixedModel, new[] { "layer1" }, preferCuda: false);

        var e = Assert.ThrowsExactly<ArgumentException>(() => backbone.Run(new float[3 * 32 * 32], 1, 32, 32));

        StringAssert.Contains(e.Message, "64×64");
        StringAssert.Contains(e.Message, "32×32");
        Assert.AreEqual(new LayerShape(64, 16, 16), backbone.GetLayerShapes(64, 64).Single());
    }

    [TestMethod]
    public void FixedBatchModel_RunsLargerBatchesInChunks()
    {
        float[] images = BackboneTestModels.RandomImages(2 * 3 * Size * Size, seed: 4);
        using var fixedBatch = OnnxBackbone.FromBytes(WithInputDims(1, 3, Size, Size), new[] { "layer2" }, preferCuda: false);
        using var free = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18, new[] { "layer2" }, preferCuda: false);

        float[] chunked = fixedBatch.Run(images, 2, Size, Size)[0];
        float[] whole = free.Run(images, 2, Size, Size)[0];

        Assert.AreEqual(2 * 128 * 4 * 4, chunked.Length);
        for (int i = 0; i < whole.Length; i++)
            Assert.AreEqual(whole[i], chunked[i], 1e-5f * (1 + Math.Abs(whole[i])));
    }

    [TestMethod]
    public void ModelWhoseInputIsNotThreeChannels_IsRejected()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxBackbone.FromBytes(WithInputDims(1, 1, 64, 64), new[] { "layer1" }, preferCuda: false));
        StringAssert.Contains(e.Message, "1 channels");
        StringAssert.Contains(e.Message, "3-channel");

        ModelProto model = BackboneTestModels.Parse(BackboneTestModels.UntrainedResNet18);
        model.Graph.Input[0].Type.TensorType.Shape.Dim.RemoveAt(0);
        var e3 = Assert.ThrowsExactly<ArgumentException>(() =>
            OnnxBackbone.FromBytes(BackboneTestModels.Serialize(model), new[] { "layer1" }, preferCuda: false));
        StringAssert.Contains(e3.Message, "3 dimensions");
    }

    [TestMethod]
    public void Run_WrongNumberOfValues_Throws()
    {
        using var backbone = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18, new[] { "layer1" }, preferCuda: false);

        var e = Assert.ThrowsExactly<ArgumentException>(() => backbone.Run(new float[3 * Size * Size], 2, Size, Size));

        StringAssert.Contains(e.Message, "Expected 2×3×32×32 = 6144 values, got 3072");
    }

    [TestMethod]
    public void Run_BatchEqualsSingleImages_AndIsThreadSafe()
    {
        const int batch = 3;
        int per = 3 * Size * Size;
        float[] images = BackboneTestModels.RandomImages(batch * per, seed: 9);
        using var backbone = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18, new[] { "layer1", "layer3" }, preferCuda: false);

        float[][] together = backbone.Run(images, batch, Size, Size);
        var single = new float[batch][][];
        Parallel.For(0, batch, i => single[i] = backbone.Run(images.AsSpan(i * per, per), 1, Size, Size));

        for (int l = 0; l < 2; l++)
        {
            int size = together[l].Length / batch;
            Assert.AreEqual(l == 0 ? 64 * 8 * 8 : 256 * 2 * 2, size);
            for (int i = 0; i < batch; i++)
            {
                var part = together[l].AsSpan(i * size, size);
                for (int j = 0; j < size; j++)
                    Assert.AreEqual(single[i][l][j], part[j], 1e-5f * (1 + Math.Abs(part[j])));
            }
        }
    }

    [TestMethod]
    public void EditedModel_KeepsOnlyWhatTheLayersNeed()
    {
        using var backbone = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18, new[] { "layer1" }, preferCuda: false);

        ModelProto edited = BackboneTestModels.Parse(backbone.EditedModelBytes);

        CollectionAssert.AreEqual(new[] { "layer1" }, edited.Graph.Output.Select(o => o.Name).ToArray());
        // conv1, bn1, relu, maxpool, and per basic block conv, bn, relu, conv, bn, add, relu (2 blocks).
        Assert.AreEqual(4 + 2 * 7, edited.Graph.Node.Count);
        Assert.IsFalse(edited.Graph.Initializer.Any(t => t.Name.StartsWith("layer2.", StringComparison.Ordinal)));
        Assert.IsTrue(backbone.IsUntrained);
    }

    private static byte[] WithInputDims(params long[] dims)
    {
        ModelProto model = BackboneTestModels.Parse(BackboneTestModels.UntrainedResNet18);
        var shape = model.Graph.Input[0].Type.TensorType.Shape;
        shape.Dim.Clear();
        foreach (long d in dims)
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return BackboneTestModels.Serialize(model);
    }
}
