// Where a process's managed allocations come from: the runtime's allocation ticks (one per ~100 KB allocated, with
// the type and the stack) from an EventPipe file, grouped by type and stack, most frequent first.
// Record (the runtime writes the file itself; method names come from its rundown at a clean exit):
//   AB_ENV_A="DOTNET_EnableEventPipe=1 DOTNET_EventPipeOutputPath=/tmp/a.nettrace DOTNET_EventPipeConfig=Microsoft-Windows-DotNETRuntime:0x19:5" \
//     bench/tools/http-ab.sh reverse DIR DIR 1 5
// Read:  dotnet run -c Release --project bench/tools/alloctrace -- /tmp/a.nettrace [TOP=8] [DEPTH=14]
using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Etlx;
using Microsoft.Diagnostics.Tracing.Parsers.Clr;

if (args.Length < 1)
{
    Console.Error.WriteLine("usage: alloctrace FILE.nettrace [TOP] [DEPTH]");
    return 2;
}
int top = args.Length > 1 ? int.Parse(args[1]) : 8, depth = args.Length > 2 ? int.Parse(args[2]) : 14;
using var log = new TraceLog(TraceLog.CreateFromEventPipeDataFile(args[0]));
var source = log.Events.GetSource();
var counts = new Dictionary<string, int>();
int total = 0;
source.Clr.GCAllocationTick += (GCAllocationTickTraceData d) =>
{
    total++;
    var sb = new System.Text.StringBuilder($"{d.TypeName} ({d.ObjectSize} bytes)\n");
    int n = 0;
    for (var f = d.CallStack(); f is not null && n < depth; f = f.Caller, n++)
        sb.Append("    ").Append(f.CodeAddress.FullMethodName is { Length: > 0 } m ? m : f.CodeAddress.Address.ToString("x")).Append('\n');
    var key = sb.ToString();
    counts[key] = counts.GetValueOrDefault(key) + 1;
};
source.Process();
Console.WriteLine($"{total} allocation ticks");
foreach (var (stack, count) in counts.OrderByDescending(p => p.Value).Take(top))
    Console.WriteLine($"{count,6} {100.0 * count / Math.Max(1, total),5:0.0}%  {stack}");
return 0;
