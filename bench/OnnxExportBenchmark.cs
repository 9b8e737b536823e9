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
/// Usage: <c>onnx [image size (256)] [test images (8)]</c>.
/// </summary>
internal static class OnnxExportBenchmark
{
    public static int Run(string[] args)
    {
        int size = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 256;
        int testImages = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 8;
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
            foreach (var (name, estimator) in detectors)
            {
                using var model = (BackboneAnomalyTransformerBase)estimator.Fit(train);
                string file = Path.Combine(folder, name + ".onnx");
                model.ExportToOnnx(file);

                float[] scores = model.Transform(test).GetColumn<float>("Score").ToArray();   // warm-up
                var watch = Stopwatch.StartNew();
                scores = model.Transform(test).GetColumn<float>("Score").ToArray();
                double transformerSeconds = watch.Elapsed.TotalSeconds;

                float[] images = ImageTensor(test, size);
                using var session = new InferenceSession(file);
                using var input = OrtValue.CreateTensorValueFromMemory(images, [testImages, 3, size, size]);
                float[] onnxScores;
                using (var outputs = session.Run(new RunOptions(), ["image"], [input], ["Score"]))   // warm-up
                    onnxScores = outputs[0].GetTensorDataAsSpan<float>().ToArray();
                watch.Restart();
                using (session.Run(new RunOptions(), ["image"], [input], session.OutputNames)) { }
                double onnxSeconds = watch.Elapsed.TotalSeconds;

                double worst = scores.Zip(onnxScores, (a, b) => Math.Abs(a - b) / Math.Max(Math.Abs(a), 1e-12)).Max();
                Console.WriteLine($"{name}: {new FileInfo(file).Length / 1e6:F1} MB; transformer {testImages / transformerSeconds:F1} images/s, " +
                                  $"ONNX Runtime (batch {testImages}) {testImages / onnxSeconds:F1} images/s, ratio {transformerSeconds / onnxSeconds:F2}; " +
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
            int[] channel = image.PixelFormat == MLPixelFormat.Bgra32 ? [2, 1, 0] : [0, 1, 2];
            ReadOnlySpan<byte> pixels = image.Pixels;
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < plane; p++)
                    tensor[(i * 3 + c) * plane + p] = pixels[4 * p + channel[c]];
        }
        return tensor;
    }
}
