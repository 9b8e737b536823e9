// The package smoke test's consumer, built outside the repository against the packed packages.
//   fit <folder>:    generate a small synthetic set, fit DFM and CFA (1 epoch) at 128 px, score, evaluate, save.
//   reload <folder>: in a new process, load the saved models and check that they score the test images as before.
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;

if (args.Length != 2 || args[0] is not ("fit" or "reload"))
{
    Console.Error.WriteLine("usage: Consumer fit|reload <folder>");
    return 2;
}
string folder = args[1], data = Path.Combine(folder, "data");
var ml = new MLContext(seed: 0);
Console.WriteLine($"{args[0]}: ML.NET {Version(typeof(MLContext))}, Anomaly.Vision {Version(typeof(DfmOptions))}");
if (args[0] == "fit")
    SyntheticDefectSet.Generate(data, new SyntheticDefectSetOptions
    { Categories = [SyntheticDefectSet.Washer], ImageSize = 128, TrainCount = 24, TestGoodCount = 8, TestDefectCount = 8, Overwrite = true });
IDataView train = ml.Data.LoadMvtecAd(data, SyntheticDefectSet.Washer, MvtecSplit.Train);
IDataView test = ml.Data.LoadMvtecAd(data, SyntheticDefectSet.Washer, MvtecSplit.Test);

bool ok = true;
foreach (string name in new[] { "dfm", "cfa" })
{
    string zip = Path.Combine(folder, name + ".zip"), scoresFile = Path.Combine(folder, name + ".scores");
    if (args[0] == "fit")
    {
        IEstimator<ITransformer> estimator = name == "dfm"
            ? ml.Transforms.DetectDfmAnomalies(new DfmOptions { InputColumnName = "ImagePath", ImageHeight = 128, ImageWidth = 128 })
            : ml.Transforms.DetectCfaAnomalies(new CfaOptions { InputColumnName = "ImagePath", ImageHeight = 128, ImageWidth = 128, Epochs = 1 });
        ITransformer model = estimator.Fit(train);
        IDataView scored = model.Transform(test);
        ImageAnomalyMetrics metrics = ml.AnomalyDetection.EvaluateImageAnomalies(scored);
        float[] scores = scored.GetColumn<float>("Score").ToArray();
        ml.Model.SaveAtomically(model, train.Schema, zip);
        File.WriteAllLines(scoresFile, scores.Select(s => s.ToString("R", CultureInfo.InvariantCulture)));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name}: fitted, {scores.Length} test images scored, image AUROC {metrics.ImageAuroc:F3}, pixel AUROC {metrics.PixelAuroc:F3}, saved {new FileInfo(zip).Length / 1024} KB"));
    }
    else
    {
        float[] expected = File.ReadAllLines(scoresFile).Select(s => float.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        ITransformer loaded = ml.Model.Load(zip, out _);
        float[] scores = loaded.Transform(test).GetColumn<float>("Score").ToArray();
        double diff = scores.Length == expected.Length ? scores.Zip(expected, (a, b) => (double)Math.Abs(a - b)).Max() : double.PositiveInfinity;
        bool same = diff <= 1e-5;
        ok &= same;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name}: reloaded in a new process, {scores.Length} scores, largest difference {diff:G3} ({(same ? "same" : "DIFFERENT")})"));
    }
}
return ok ? 0 : 1;

static string? Version(Type type) =>
    type.Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
        .Cast<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0];
