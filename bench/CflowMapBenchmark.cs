using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;

/// <summary>
/// CFlow's map normalisation on real images: fits CFlow once (ImageNet ResNet-18) on an MVTec AD category and
/// evaluates the same flows twice, with the log-likelihood references fixed at Fit time and with the per-image
/// maxima that models saved before them use.
/// Usage: <c>cflow-map &lt;MVTec root&gt; &lt;category&gt; [image size (256)] [epochs (1)]</c>.
/// </summary>
internal static class CflowMapBenchmark
{
    public static Command Command()
    {
        var root = new Argument<string>("mvtec-root") { Description = "The MVTec AD root folder." };
        var category = new Argument<string>("category") { Description = "The category folder." };
        var size = new Argument<int>("image-size") { Description = "Input size in pixels.", DefaultValueFactory = _ => 256 };
        var epochs = new Argument<int>("epochs") { Description = "Training epochs.", DefaultValueFactory = _ => 1 };
        var command = new Command("cflow-map", "CFlow's anomaly map normalisation on a real category.") { root, category, size, epochs };
        command.SetAction(r => Run(r.GetValue(root)!, r.GetValue(category)!, r.GetValue(size), r.GetValue(epochs)));
        return command;
    }

    private static int Run(string root, string category, int size, int epochs)
    {
        var ml = new MLContext(seed: 0);
        var train = ml.Data.LoadMvtecAd(root, category, MvtecSplit.Train);
        var test = ml.Data.LoadMvtecAd(root, category, MvtecSplit.Test);
        var clock = Stopwatch.StartNew();
        var options = new CflowOptions
        {
            InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Epochs = epochs,
            Progress = new Reporter(p => Console.WriteLine($"  {clock.Elapsed.TotalSeconds,7:F1} s  {p.Stage} {p.Step}/{p.Steps}" +
                (double.IsNaN(p.Loss) ? "" : $" loss {p.Loss:F4}"))),
        };
        using var model = ml.Transforms.DetectCflowAnomalies(options).Fit(train);
        Console.WriteLine($"{category}, {size} px, {epochs} epochs: fitted in {clock.Elapsed.TotalSeconds:F1} s; references " +
                          string.Join(", ", model.Model.LogLikelihoodReferences!.Select(r => r.ToString("F3", CultureInfo.InvariantCulture))));
        var references = model.Model.LogLikelihoodReferences;
        var fixedReference = ml.AnomalyDetection.EvaluateImageAnomalies(ml.Data.Cache(model.Transform(test)));
        model.Model.LogLikelihoodReferences = null;
        var perImage = ml.AnomalyDetection.EvaluateImageAnomalies(ml.Data.Cache(model.Transform(test)));
        model.Model.LogLikelihoodReferences = references;
        Console.WriteLine("normalisation            image AUROC  pixel AUROC  AUPRO   image F1");
        Print("per-image maximum (old)", perImage);
        Print("reference at Fit (new)", fixedReference);
        return 0;
    }

    private static void Print(string name, ImageAnomalyMetrics m) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-24} {m.ImageAuroc,11:F3}  {m.PixelAuroc,11:F3}  {m.Aupro,5:F3}  {m.ImageF1Max,8:F3}"));

    private sealed class Reporter(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
