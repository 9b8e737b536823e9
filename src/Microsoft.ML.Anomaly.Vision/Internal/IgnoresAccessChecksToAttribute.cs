using System.Runtime.CompilerServices;

// The library compiles against publicized reference copies of these assemblies (build/PublicizeMlNet.targets)
// and uses ML.NET's model persistence API; the runtime honours this attribute and skips access checks.
[assembly: IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: IgnoresAccessChecksTo("Microsoft.ML.Data")]
[assembly: IgnoresAccessChecksTo("Microsoft.ML.DataView")]
[assembly: IgnoresAccessChecksTo("Microsoft.ML.OnnxConverter")]

// The runtime looks this attribute up by its full name; it is not part of the public framework surface.
#pragma warning disable IDE0130 // Namespace does not match folder structure
namespace System.Runtime.CompilerServices
#pragma warning restore IDE0130
{
    /// <summary>
    /// Tells the runtime to let this assembly reach non-public types and members of the named assembly.
    /// </summary>
    [AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
    internal sealed class IgnoresAccessChecksToAttribute : Attribute
    {
        /// <summary>Creates the attribute for one assembly.</summary>
        /// <param name="assemblyName">The simple name of the assembly whose access checks are skipped.</param>
        public IgnoresAccessChecksToAttribute(string assemblyName) => AssemblyName = assemblyName;

        /// <summary>The simple name of the assembly whose access checks are skipped.</summary>
        public string AssemblyName { get; }
    }
}
