using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Bastion.Tests.Admin;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>
/// The README's `dotnet run --project src/Bastion ...` commands, extracted from README.md and run exactly as written
/// from the repository root (issue 13: they used to fail because the Web SDK ran them in src/Bastion).
/// </summary>
public sealed partial class ReadmeCommandTests
{
    /// <summary>Shell commands of the README's ```sh blocks, continuation lines joined and comments dropped.</summary>
    static List<string> Commands()
    {
        var commands = new List<string>();
        bool inSh = false;
        string pending = "";
        foreach (var raw in File.ReadLines(Path.Combine(Repo.Root, "README.md")))
        {
            if (raw.StartsWith("```", StringComparison.Ordinal))
            {
                inSh = !inSh && raw.Trim() == "```sh";
                continue;
            }
            if (!inSh) continue;
            var line = CommentRegex().Replace(raw, "").TrimEnd();
            if (line.EndsWith('\\')) { pending += line[..^1] + " "; continue; }
            var command = (pending + line).Trim();
            pending = "";
            if (command.Length > 0) commands.Add(Regex.Replace(command, @"\s+", " "));
        }
        return commands;
    }

    [GeneratedRegex(@"\s+#.*$")]
    private static partial Regex CommentRegex();

    [Fact]
    public async Task Readme_dotnet_run_commands_work_from_the_repository_root()
    {
        var runnable = Commands().Where(c => c.StartsWith("dotnet run --project src/Bastion", StringComparison.Ordinal)).ToList();
        Assert.True(runnable.Count >= 4, "README commands found: " + string.Join("\n", Commands()));
        foreach (var command in runnable)
        {
            if (command.Contains(" -- run", StringComparison.Ordinal)) await RunsAndStops(command);
            else
            {
                var r = await Proc.RunAsync("sh", ["-c", command], TimeSpan.FromMinutes(5), workDir: Repo.Root);
                Assert.DoesNotContain("cannot read", r.Stdout + r.Stderr);
                if (command.Contains(" -- check", StringComparison.Ordinal))
                {
                    Assert.True(r.ExitCode == 0, $"{command}\n{r}");
                    Assert.Equal("ok", r.Stdout.Trim().Split('\n')[^1]);
                }
                else
                {
                    Assert.True(r.ExitCode is 0 or 1, $"{command}\n{r}");
                    Assert.Contains("verdict: ", r.Stdout);
                }
            }
        }
    }

    /// <summary>`run` in its own process group: wait until it serves, then Ctrl-C (SIGINT) as the README says.</summary>
    static async Task RunsAndStops(string command)
    {
        // The README's addresses are fixed (3128, 9090): wait for another run of this suite to let them go.
        await Wait.UntilAsync(() => Free(3128) && Free(9090), TimeSpan.FromSeconds(90), "ports 3128 and 9090 to be free for the README's run");
        // SIGINT back to its default: a suite started in the background (`cmd &` in a script) inherits it ignored.
        await using var p = Proc.Start("setsid", ["env", "--default-signal=INT", "sh", "-c", "exec " + command], workDir: Repo.Root);
        await p.WaitForOutputAsync(" running (", TimeSpan.FromMinutes(5));
        Assert.Contains("listening on 127.0.0.1:3128", p.Output);
        var kill = await Proc.RunAsync("kill", ["-INT", "--", "-" + p.Process.Id]);
        Assert.Equal(0, kill.ExitCode);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        await p.Process.WaitForExitAsync(cts.Token);
        Assert.True(p.Process.ExitCode == 0, $"{command}: exit {p.Process.ExitCode}\n{p.Output}");
        Assert.Contains("bastion: stopped", p.Output);
    }

    static bool Free(int port)
    {
        try
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException) { return false; }
    }
}
