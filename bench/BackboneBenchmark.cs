using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

/// <summary>
/// Backbone throughput against a compute floor: the floor is this machine's ONNX Runtime GEMM rate divided
/// by the convolution FLOPs of one image, the actual rate is <see cref="OnnxBackbone"/> on an untrained
/// ResNet-18 (batch 8, layers 1–3, 256×256). Last line: <c>backbone_fraction_of_floor=actual/floor</c>.
/// </summary>
internal static class BackboneBenchmark
{
    private const int GemmSize = 1024;
    private const int ImageSize = 256;
    private const int Batch = 8;
    private static readonly string[] Layers = { "layer1", "layer2", "layer3" };

    public static int Run(string[] args)
    {
        var ci = CultureInfo.InvariantCulture;
        double gemmGflops = MeasureGemm();
        Console.WriteLine(string.Format(ci, "gemm {0}x{0}x{0} (ONNX Runtime MatMul, CPU): {1:F1} GFLOP/s", GemmSize, gemmGflops));

        using var backbone = OnnxBackbone.FromBytes(ResNetBackbones.CreateUntrainedResNet18(seed: 0), Layers);
        double flopsPerImage = ConvFlops(backbone.EditedModelBytes, ImageSize, ImageSize);
        double floor = gemmGflops * 1e9 / flopsPerImage;
        Console.WriteLine(string.Format(ci, "resnet18 to layer3 at {0}x{0}: {1:F3} GFLOP per image (2 x conv MACs)", ImageSize, flopsPerImage / 1e9));
        Console.WriteLine(string.Format(ci, "floor (gemm rate / FLOPs): {0:F1} images/s", floor));

        var images = new float[Batch * 3 * ImageSize * ImageSize];
        var random = new Random(1);
        for (int i = 0; i < images.Length; i++)
            images[i] = (float)(random.NextDouble() * 2 - 1);
        for (int i = 0; i < 2; i++)
            backbone.Run(images, Batch, ImageSize, ImageSize);
        int runs = 0;
        var watch = Stopwatch.StartNew();
        while (runs < 3 || watch.Elapsed.TotalSeconds < 5)
        {
            backbone.Run(images, Batch, ImageSize, ImageSize);
            runs++;
        }
        double actual = runs * Batch / watch.Elapsed.TotalSeconds;
        Console.WriteLine(string.Format(ci, "OnnxBackbone ({0}, batch {1}, {2} runs): {3:F1} images/s ({4:F1} GFLOP/s effective)",
            backbone.ExecutionProvider, Batch, runs, actual, actual * flopsPerImage / 1e9));
        Console.WriteLine(string.Format(ci, "backbone_fraction_of_floor={0:F3}", actual / floor));
        return 0;
    }

    /// <summary>GFLOP/s of a 1024³ float MatMul in ONNX Runtime with default threading.</summary>
    private static double MeasureGemm()
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = "Anomaly.Vision.Bench", Graph = new GraphProto { Name = "gemm" } };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        model.Graph.Input.Add(Matrix("a"));
        model.Graph.Input.Add(Matrix("b"));
        model.Graph.Output.Add(Matrix("c"));
        var node = new NodeProto { Name = "/MatMul", OpType = "MatMul" };
        node.Input.Add("a");
        node.Input.Add("b");
        node.Output.Add("c");
        model.Graph.Node.Add(node);

        using var options = new SessionOptions();
        using var session = new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model), options);
        using var runOptions = new RunOptions();
        var shape = new long[] { GemmSize, GemmSize };
        using var a = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, shape);
        using var b = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, shape);
        var random = new Random(2);
        foreach (var v in new[] { a, b })
        {
            var span = v.GetTensorMutableDataAsSpan<float>();
            for (int i = 0; i < span.Length; i++)
                span[i] = (float)random.NextDouble();
        }
        var names = new[] { "a", "b" };
        var inputs = new[] { a, b };
        var outputNames = new[] { "c" };
        for (int i = 0; i < 3; i++)
            session.Run(runOptions, names, inputs, outputNames).Dispose();
        int runs = 0;
        var watch = Stopwatch.StartNew();
        while (runs < 5 || watch.Elapsed.TotalSeconds < 3)
        {
            session.Run(runOptions, names, inputs, outputNames).Dispose();
            runs++;
        }
        return 2.0 * GemmSize * GemmSize * GemmSize * runs / watch.Elapsed.TotalSeconds / 1e9;
    }

    private static ValueInfoProto Matrix(string name)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = GemmSize });
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = GemmSize });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    /// <summary>2 × multiply-adds of every Conv node of a (pruned) model for one image, by propagating C×H×W shapes.</summary>
    private static double ConvFlops(byte[] modelBytes, int height, int width)
    {
        var model = ModelProto.Parser.ParseFrom(modelBytes);
        var weights = model.Graph.Initializer.ToDictionary(t => t.Name, t => t.Dims.ToArray());
        var shapes = new Dictionary<string, (long C, long H, long W)> { [model.Graph.Input[0].Name] = (3, height, width) };
        double macs = 0;
        foreach (var node in model.Graph.Node)
        {
            var (c, h, w) = shapes[node.Input[0]];
            long[] Ints(string name) => node.Attribute.First(a => a.Name == name).Ints.ToArray();
            switch (node.OpType)
            {
                case "Conv":
                {
                    long[] kernel = weights[node.Input[1]];
                    long[] strides = Ints("strides"), pads = Ints("pads");
                    long outH = (h + pads[0] + pads[2] - kernel[2]) / strides[0] + 1;
                    long outW = (w + pads[1] + pads[3] - kernel[3]) / strides[1] + 1;
                    macs += (double)kernel[0] * outH * outW * kernel[1] * kernel[2] * kernel[3];
                    shapes[node.Output[0]] = (kernel[0], outH, outW);
                    break;
                }
                case "MaxPool":
                {
                    long[] kernel = Ints("kernel_shape"), strides = Ints("strides"), pads = Ints("pads");
                    shapes[node.Output[0]] = (c, (h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1,
                        (w + pads[1] + pads[3] - kernel[1]) / strides[1] + 1);
                    break;
                }
                default:
                    shapes[node.Output[0]] = (c, h, w);
                    break;
            }
        }
        return 2 * macs;
    }
}
