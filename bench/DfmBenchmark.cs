using System.CommandLine;
using System.Diagnostics;
using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;

/// <summary>
/// DFM's fit and scoring with the ImageNet ResNet-18, measured in one run: end to end through ML.NET (<c>Fit</c> on
/// the training images, <c>Transform</c> over the scoring images), then the same work stage by stage: decode,
/// resize and normalise, backbone, and for Fit the pooling, PCA and Gaussian (<see cref="DfmTrainer.Fit"/>), for
/// scoring the pooling, projection and score (<see cref="DfmModel.Score"/>) and the map's upsampling.
/// Options: <c>--images &lt;folder of PNGs&gt; --size 256 --train-images 64 --score-images 32 --png-size 900 --score-type fre|nll</c>
/// (without <c>--images</c>, synthetic PNGs). Last lines: <c>dfm_fit_seconds=</c>, <c>dfm_scoring_images_per_second=</c>.
/// </summary>
internal static class DfmBenchmark
{
    private const string Layer = "layer3";

    public static Command Command()
    {
        var size = new Option<int>("--size") { Description = "Input size in pixels.", DefaultValueFactory = _ => 256 };
        var trainImages = new Option<int>("--train-images") { Description = "Training images.", DefaultValueFactory = _ => 64 };
        var scoreImages = new Option<int>("--score-images") { Description = "Images to score.", DefaultValueFactory = _ => 32 };
        var pngSize = new Option<int>("--png-size") { Description = "Size of the synthetic PNGs.", DefaultValueFactory = _ => 900 };
        var images = new Option<string?>("--images") { Description = "A folder of PNGs. Default: synthetic PNGs." };
        var scoreType = new Option<DfmScoreType>("--score-type") { Description = "fre or nll.", DefaultValueFactory = _ => DfmScoreType.Fre };
        var command = new Command("dfm", "DFM fit and scoring stage by stage.") { size, trainImages, scoreImages, pngSize, images, scoreType };
        command.SetAction(r => Run(r.GetValue(size), r.GetValue(trainImages), r.GetValue(scoreImages), r.GetValue(pngSize), r.GetValue(images), r.GetValue(scoreType)));
        return command;
    }

    private static int Run(int size, int trainImages, int scoreImages, int pngSize, string? imageFolder, DfmScoreType scoreType)
    {

        string folder = Path.Combine(Path.GetTempPath(), $"dfm-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        try
        {
            string[] all = imageFolder is null
                ? CfaTrainBenchmark.WritePngs(folder, trainImages + scoreImages, pngSize)
                : Directory.GetFiles(imageFolder, "*.png").Order(StringComparer.Ordinal).ToArray();
            if (all.Length < trainImages + scoreImages)
                throw new ArgumentException($"{all.Length} images in {imageFolder}, fewer than {trainImages} + {scoreImages}.");
            string[] train = all[..trainImages], score = all[trainImages..(trainImages + scoreImages)];
            var backbone = ImageNetBackbones.ResNet18();
            Console.WriteLine($"DFM ({scoreType}), {size}×{size}, backbone {backbone}, {train.Length} training and {score.Length} scoring " +
                              $"{(imageFolder is null ? $"synthetic {pngSize}×{pngSize} " : "")}PNG images; {Environment.ProcessorCount} cores");

            // End to end.
            var ml = new MLContext(seed: 0);
            var options = new DfmOptions { Backbone = backbone, InputColumnName = nameof(ImagePathRow.ImagePath), ImageHeight = size, ImageWidth = size, ScoreType = scoreType };
            var clock = Stopwatch.StartNew();
            using var model = ml.Transforms.DetectDfmAnomalies(options).Fit(Rows(ml, train));
            double fitSeconds = clock.Elapsed.TotalSeconds;
            var data = Rows(ml, score);
            double ScoreAll() => ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: true).Sum(r => r.Score);
            ScoreAll();
            clock.Restart();
            ScoreAll();
            double imagesPerSecond = score.Length / clock.Elapsed.TotalSeconds;
            Console.WriteLine($"end to end: Fit {fitSeconds:F2} s ({fitSeconds * 1e3 / train.Length:F1} ms/image), scoring {imagesPerSecond:F2} images/s " +
                              $"(batch {model.ScoringBatchSize}); {model.Model.ComponentCount} components of {model.Model.FeatureDimension}");

            Stages(backbone, train, score, size, scoreType);
            Console.WriteLine($"dfm_fit_seconds={fitSeconds:F2}");
            Console.WriteLine($"dfm_scoring_images_per_second={imagesPerSecond:F2}");
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Fit's and scoring's stages one after the other, batch by batch (decode and resize one image per core, as the transformer runs them), with their shares.</summary>
    private static void Stages(BackboneModel backboneModel, string[] train, string[] score, int size, DfmScoreType scoreType)
    {
        using var backbone = OnnxBackbone.FromBytes(backboneModel.GetOnnxBytes(), [Layer]);
        var shape = backbone.GetLayerShapes(size, size)[0];
        const int batch = 8;

        // Fit: decode, resize + normalise and backbone per batch, then DFM's own fit on all features.
        var fit = new StageClock("decode", "resize+normalise", "backbone", "pool+PCA+Gaussian");
        var source = new InMemoryFeatureSource([shape]);
        foreach (var maps in Extract(backbone, train, size, batch, fit))
        {
            for (int i = 0; i < maps.Length / shape.Size; i++)
                source.Add([maps.AsSpan(i * shape.Size, shape.Size).ToArray()]);
        }
        DfmModel? model = null;
        fit.Time(3, () => model = DfmTrainer.Fit(source, new DfmTrainingOptions { ScoreType = scoreType, Device = ComputeDevice.Cpu }));
        fit.Print("Fit", train.Length);

        // Scoring: the same first stages, then score and map per image.
        var scoring = new StageClock("decode", "resize+normalise", "backbone", "pool+project+score", "map (upsample)");
        var errors = new float[model!.PooledHeight * model.PooledWidth];
        var map = new float[size * size];
        foreach (var maps in Extract(backbone, score, size, batch, scoring))
        {
            for (int i = 0; i < maps.Length / shape.Size; i++)
            {
                scoring.Time(3, () => model.Score(maps.AsSpan(i * shape.Size, shape.Size), scoreType == DfmScoreType.Fre ? errors : []));
                if (scoreType == DfmScoreType.Fre)
                    scoring.Time(4, () => AnomalyMapMath.BilinearResize(errors, model.PooledHeight, model.PooledWidth, map, size, size, alignCorners: false));
            }
        }
        scoring.Print("scoring", score.Length);
    }

    /// <summary>Decodes, normalises and runs the backbone over the images in batches, timing the three stages.</summary>
    private static IEnumerable<float[]> Extract(OnnxBackbone backbone, string[] paths, int size, int batch, StageClock clock)
    {
        int imageFloats = 3 * size * size;
        for (int start = 0; start < paths.Length; start += batch)
        {
            int n = Math.Min(batch, paths.Length - start);
            var images = new float[n * imageFloats];
            ImageStages.Load(paths, start, n, size, images, clock.Time);
            float[][] maps = [];
            clock.Time(2, () => maps = backbone.Run(images, n, size, size));
            yield return maps[0];
        }
    }

    private static IDataView Rows(MLContext ml, string[] paths) =>
        ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { ImagePath = p }));

    private sealed class StageClock(params string[] names)
    {
        private readonly double[] _seconds = new double[names.Length];
        private readonly Stopwatch _clock = new();

        public void Time(int stage, Action action)
        {
            _clock.Restart();
            action();
            _seconds[stage] += _clock.Elapsed.TotalSeconds;
        }

        public void Print(string what, int images)
        {
            double total = _seconds.Sum();
            Console.WriteLine($"{what} stages one by one ({images} images, {total:F2} s in all, {images / total:F2} images/s if run back to back):");
            for (int s = 0; s < names.Length; s++)
                Console.WriteLine($"  {names[s],-19} {_seconds[s] * 1e3 / images,8:F2} ms/image {100 * _seconds[s] / total,6:F1} %");
        }
    }

    private sealed class ImagePathRow
    {
        public string ImagePath { get; set; } = "";
    }

    private sealed class ScoreRow
    {
        public float Score { get; set; }
    }
}
