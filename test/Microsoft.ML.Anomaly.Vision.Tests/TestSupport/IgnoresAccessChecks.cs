// The toy detectors use ML.NET's model persistence API (compiled against the publicized copies, see
// build/PublicizeMlNet.targets); the attribute class is the library's (visible through InternalsVisibleTo).
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.Data")]
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.DataView")]
[assembly: System.Runtime.CompilerServices.IgnoresAccessChecksTo("Microsoft.ML.OnnxConverter")]
