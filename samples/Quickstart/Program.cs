using Anomaly.Vision.Training;

TorchRuntime.EnsureAvailable();
Console.WriteLine("Anomaly.Vision quickstart: TorchSharp runtime loaded.");
