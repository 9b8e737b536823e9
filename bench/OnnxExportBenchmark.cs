using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;

/// <summary>
/// The exported ONNX graphs against the transformers, side by side in one run: each detector is fitted on a small
/// synthetic set with an untrained ResNet-18 (scoring speed does not depend on the weights), exported with
/// <see cref="BackboneAnomalyTransformerBase.ExportToOnnx"/>, and both score the same test images.
/// The transformer's time includes reading and converting the PNG files; ONNX Runtime's takes the decoded tensor.
/// Usage: <c>onnx [image size (256)] [test images (8)] [cfa,dfm,cflow (all)]</c>.
/// </summary>
internal static class OnnxExportBenchmark
{
    public static Command Command()
    {
        var size = new Argument<int>("image-size") { Description = "Input size in pixels.", DefaultValueFactory = _ => 256 };
        var testImages = new Argument<int>("test-images") { Description = "Test images to score.", DefaultValueFactory = _ => 8 };
        var detectors = new Argument<string?>("detectors") { Description = "Comma-separated cfa, dfm, cflow. Default: all." };
        var command = new Command("onnx", "Exported ONNX models against the transformers.") { size, testImages, detectors };
        command.SetAction(r => Run(r.GetValue(size), r.GetValue(testImages), r.GetValue(detectors)?.Split(',') ?? []));
        return command;
    }

    private static int Run(int size, int testImages, string[] only)
    {
        string folder = Directory.CreateTempSubdirectory("anomaly-vision-onnx-bench").FullName;
        try
        {
            SyntheticDefectSet.Generate(folder, new SyntheticDefectSetOptions
            {
                Categories = [SyntheticDefectSet.Washer], ImageSize = size, TrainCount = 10, TestGoodCount = testImages / 2, TestDefectCount = testImages - testImages / 2,
            });
            string backbone = Path.Combine(folder, "resnet18-untrained.onnx");
            File.WriteAllBytes(backbone, ResNetBackbones.CreateUntrainedResNet18());
            var ml = new MLContext(seed: 0);
            IDataView train = ml.Data.LoadMvtecAd(folder, SyntheticDefectSet.Washer, MvtecSplit.Train);
            IDataView test = ml.Data.LoadMvtecAd(folder, SyntheticDefectSet.Washer, MvtecSplit.Test);
            Console.WriteLine($"{size}×{size} input, {testImages} test images, untrained ResNet-18, {Environment.ProcessorCount} logical CPUs");

            var detectors = new (string Name, IEstimator<ITransformer> Estimator)[]
            {
                ("CFA", ml.Transforms.DetectCfaAnomalies(new CfaOptions
                    { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Epochs = 1 })),
                ("DFM", ml.Transforms.DetectDfmAnomalies(new DfmOptions
                    { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size })),
                ("CFlow", ml.Transforms.DetectCflowAnomalies(new CflowOptions
                    { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Epochs = 1 })),
            };
            foreach (var (name, estimator) in detectors.Where(d => only.Length == 0 || only.Contains(d.Name, StringComparer.OrdinalIgnoreCase)))
            {
                using var model = (BackboneAnomalyTransformerBase)estimator.Fit(train);
                string file = Path.Combine(folder, name + ".onnx");
                model.ExportToOnnx(file);

                using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
                using var session = new InferenceSession(file, options);
                float[] images = ImageTensor(test, size);
                using var input = OrtValue.CreateTensorValueFromMemory(images, [testImages, 3, size, size]);
                float[] scores = [], onnxScores = [];
                double transformerSeconds = double.MaxValue, onnxSeconds = double.MaxValue;
                // Warm-up, then the best of three alternating runs of each (the machine is shared).
                for (int run = 0; run < 4; run++)
                {
                    var watch = Stopwatch.StartNew();
                    scores = model.Transform(test).GetColumn<float>("Score").ToArray();
                    if (run > 0)
                        transformerSeconds = Math.Min(transformerSeconds, watch.Elapsed.TotalSeconds);
                    watch.Restart();
                    using (var outputs = session.Run(new RunOptions(), ["image"], [input], session.OutputNames))
                        onnxScores = outputs[0].GetTensorDataAsSpan<float>().ToArray();
                    if (run > 0)
                        onnxSeconds = Math.Min(onnxSeconds, watch.Elapsed.TotalSeconds);
                }

                double worst = scores.Zip(onnxScores, (a, b) => Math.Abs(a - b) / Math.Max(Math.Abs(a), 1e-12)).Max();
                Console.WriteLine($"{name}: {new FileInfo(file).Length / 1e6:F1} MB; transformer {testImages / transformerSeconds:F2} images/s " +
                                  $"({1000 * transformerSeconds / testImages:F0} ms/image), ONNX Runtime batch {testImages} {testImages / onnxSeconds:F2} images/s " +
                                  $"({1000 * onnxSeconds / testImages:F0} ms/image), transformer/ONNX time {transformerSeconds / onnxSeconds:F2}; " +
                                  $"largest relative score difference {worst:E1}");
            }
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>The test images as N × 3 × size × size RGB values in 0–255 (they are already at that size).</summary>
    private static float[] ImageTensor(IDataView test, int size)
    {
        string[] paths = test.GetColumn<string>("ImagePath").ToArray();
        int plane = size * size;
        var tensor = new float[paths.Length * 3 * plane];
        for (int i = 0; i < paths.Length; i++)
        {
            using MLImage image = MLImage.CreateFromFile(paths[i]);
            Microsoft.ML.Anomaly.Vision.Export.DetectorOnnxExport.WriteInput(image, tensor.AsSpan(i * 3 * plane, 3 * plane));
        }
        return tensor;
    }
}
