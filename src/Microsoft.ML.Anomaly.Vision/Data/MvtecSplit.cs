namespace Microsoft.ML.Anomaly.Vision;

/// <summary>Which part of an MVTec AD category to read.</summary>
public enum MvtecSplit
{
    /// <summary>The defect-free training images in <c>&lt;category&gt;/train/good</c>.</summary>
    Train,

    /// <summary>The test images in <c>&lt;category&gt;/test/&lt;defect type&gt;</c>, good ones included.</summary>
    Test,
}
