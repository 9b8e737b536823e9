// Usage: ModelLoadCheck <model.zip> <image path>...
// Loads the model with a plain MLContext.Model.Load in this fresh process, scores the images through a
// prediction engine and prints one score per line (round-trip format).
using System.Globalization;
using Microsoft.ML;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: ModelLoadCheck <model.zip> <image path>...");
    return 2;
}
var ml = new MLContext();
ITransformer model = ml.Model.Load(args[0], out _);
using var engine = ml.Model.CreatePredictionEngine<ImageInput, ScoreOutput>(model);
foreach (string path in args[1..])
    Console.WriteLine(engine.Predict(new ImageInput { ImagePath = path }).Score.ToString("R", CultureInfo.InvariantCulture));
return 0;

internal sealed class ImageInput
{
    public string ImagePath { get; set; } = "";
}

internal sealed class ScoreOutput
{
    public float Score { get; set; }
}
