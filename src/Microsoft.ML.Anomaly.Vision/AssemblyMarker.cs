namespace Microsoft.ML.Anomaly.Vision; internal static class AssemblyMarker { }
