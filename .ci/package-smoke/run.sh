#!/usr/bin/env bash
# Package smoke test: packs the two libraries into a folder feed, then, as a user would, creates a console app in a
# temporary folder outside the repository, adds the main package with `dotnet add package` (the folder feed plus the
# configured source), builds it, and runs Program.cs beside this script: DFM and CFA fit, score and save, then reload in
# a second process. Two scenarios: the app as is (ML.NET 5.0.1) and the app adding Microsoft.ML 6.0.0. A third checks
# that the packages' GPU switch reached the app: AnomalyVisionGpu=true without the CUDA packages must fail and say so.
# Prints one "package smoke <scenario>: passed|failed (<reason>)" line per scenario and exits non-zero when one failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
feed="$repo/artifacts/packages"
log="$repo/artifacts/package-smoke"
rm -rf "$feed" "$log"
mkdir -p "$feed" "$log"

fail_all() {
  for name in as-is mlnet6 gpu-switch; do echo "package smoke $name: failed ($1)"; done
  exit 1
}

for project in src/Anomaly.Vision.Training src/Microsoft.ML.Anomaly.Vision; do
  dotnet pack -c Release "$repo/$project" -o "$feed" >>"$log/pack.log" 2>&1 || fail_all "dotnet pack $project failed, see $log/pack.log"
done
main=$(ls "$feed"/Anomaly.Vision.[0-9]*.nupkg 2>/dev/null | head -n 1)
[ -n "$main" ] || fail_all "no Anomaly.Vision package in $feed"
version=$(basename "$main" .nupkg); version=${version#Anomaly.Vision.}
# A package of the same version restored earlier would be taken from the global cache instead of the new one.
cache="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
rm -rf "$cache/anomaly.vision/$version" "$cache/anomaly.vision.training/$version"
echo "packages ($version):"
for f in "$feed"/*; do printf '  %-40s %s\n' "$(basename "$f")" "$(du -h "$f" | cut -f1)"; done

tmp="$(mktemp -d /tmp/anomaly-vision-smoke.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
status=0

scenario() {
  local name="$1" extra="$2" app="$tmp/$1"
  local out="$log/$name.log"
  (
    set -e
    dotnet new console -o "$app" -n Consumer --framework net10.0 --no-restore
    cp "$repo/nuget.config" "$app/nuget.config"
    dotnet nuget add source "$feed" --name anomaly-vision-packages --configfile "$app/nuget.config"
    cp "$here/Program.cs" "$app/Program.cs"
    cd "$app"
    dotnet add package Anomaly.Vision --version "$version"
    if [ -n "$extra" ]; then dotnet add package Microsoft.ML --version "$extra"; fi
    dotnet build -c Release
  ) >"$out" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "package smoke $name: failed (restore or build, see $out)"; tail -n 20 "$out"; status=1; return; fi
  if grep -Eq 'NU1107|NU1608' "$out"; then
    echo "package smoke $name: failed (restore reported $(grep -Eo 'NU1107|NU1608' "$out" | sort -u | tr '\n' ' ')see $out)"; status=1; return
  fi
  local bin="$app/bin/Release/net10.0"
  if [ ! -f "$bin/DnnImageModels/ResNet18Onnx/ResNet18.onnx" ]; then
    echo "package smoke $name: failed (ResNet18.onnx did not reach $bin/DnnImageModels)"; status=1; return
  fi
  echo "--- $name: Microsoft.ML $(sed -n 's/.*"Microsoft.ML\/\([0-9.]*\)".*/\1/p' "$app/obj/project.assets.json" | head -n 1), bin/ $(du -sh "$bin" | cut -f1)"
  if (cd "$app" && dotnet "$bin/Consumer.dll" fit "$tmp/$name-work" && dotnet "$bin/Consumer.dll" reload "$tmp/$name-work") 2>&1 | tee -a "$out"; then
    echo "package smoke $name: passed"
  else
    echo "package smoke $name: failed (the app failed, see $out)"; status=1
  fi
}

gpu_switch() {
  local app="$tmp/as-is" out="$log/gpu-switch.log"
  local expected="AnomalyVisionGpu is true but no CUDA runtime is referenced"
  if [ ! -f "$app/Consumer.csproj" ]; then echo "package smoke gpu-switch: failed (no app was built)"; status=1; return; fi
  if (cd "$app" && dotnet build -c Release -p:AnomalyVisionGpu=true) >"$out" 2>&1; then
    echo "package smoke gpu-switch: failed (the build succeeded without CUDA packages, see $out)"; status=1
  elif grep -q "$expected" "$out"; then
    echo "package smoke gpu-switch: passed"
  else
    echo "package smoke gpu-switch: failed (the build failed without the switch's message, see $out)"; status=1
  fi
}

scenario as-is ""
scenario mlnet6 6.0.0
gpu_switch
exit $status
