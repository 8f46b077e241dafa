using Bastion.Identity;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>Help on every subcommand, suggestions for typos, the system default file, passwd on a real terminal.</summary>
public sealed class CliPolishTests
{
    [Theory]
    [InlineData("run", "usage: bastion run [-c FILE] [--no-watch]")]
    [InlineData("check", "usage: bastion check [-c FILE]")]
    [InlineData("explain", "usage: bastion explain [-c FILE] --listener NAME")]
    [InlineData("passwd", "usage: bastion passwd [--stdin] FILE USER")]
    [InlineData("ca", "usage: bastion ca init DIR")]
    public async Task Every_subcommand_has_help(string command, string first)
    {
        foreach (var args in new[] { new[] { command, "--help" }, [command, "-h"], ["help", command], [command, "-c", "x.yaml", "--help"] })
        {
            var r = await Proc.BastionAsync(args);
            Assert.True(r.ExitCode == 0, $"{string.Join(' ', args)}: {r}");
            Assert.StartsWith(first, r.Stdout);
        }
    }

    [Fact]
    public async Task Typos_in_commands_and_options_get_a_suggestion()
    {
        var r = await Proc.BastionAsync(["chek", "-c", "x.yaml"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("bastion: unknown command 'chek' (did you mean 'check'?)", r.Stderr);

        r = await Proc.BastionAsync(["run", "--no-wacth"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("bastion: unknown option '--no-wacth' (did you mean '--no-watch'?)", r.Stderr);
        Assert.Contains("Try 'bastion run --help'.", r.Stderr);

        r = await Proc.BastionAsync(["explain", "--lisener", "web", "GET", "http://example.com/"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("unknown option '--lisener' (did you mean '--listener'?)", r.Stderr);
    }

    [Fact]
    public async Task Check_without_c_reads_the_system_file_like_run()
    {
        var dir = Scratch.NewDir("sys");
        var path = Path.Combine(dir, "bastion.yaml");
        File.WriteAllText(path, "listeners: [{ name: web, type: http-proxy, listen: 127.0.0.1:0, polcy: p }]\n");
        var env = new Dictionary<string, string> { ["BASTION_CONFIG"] = path };
        var r = await Proc.RunAsync("dotnet", [Proc.BastionDll, "check"], env: env);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Contains($"{path}:1:65: unknown key 'polcy' in listener (did you mean 'policy'?)", r.Stdout);

        // No system file: the embedded default is checked, and says so.
        env["BASTION_CONFIG"] = Path.Combine(dir, "missing.yaml");
        r = await Proc.RunAsync("dotnet", [Proc.BastionDll, "check"], env: env);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("ok", r.Stdout.Trim());
        Assert.Contains("checking the embedded default", r.Stderr);
    }

    // Drives a program on a real pseudo-terminal: answers each prompt, returns everything the terminal showed.
    const string PtyDriver = """
        import os, pty, select, sys, base64
        answers = sys.argv[1].split("|")
        pid, fd = pty.fork()
        if pid == 0:
            os.execvp(sys.argv[2], sys.argv[2:])
        out = b""
        def more(timeout=60):
            global out
            r, _, _ = select.select([fd], [], [], timeout)
            if not r: return False
            try: chunk = os.read(fd, 4096)
            except OSError: return False
            if not chunk: return False
            out += chunk
            return True
        for prompt, answer in zip(["password for", "again:"], answers):
            while prompt.encode() not in out.split(b"\n")[-1] and prompt.encode() not in out[-200:]:
                if not more(): break
            os.write(fd, answer.encode() + b"\r")
            out += b"<typed>"
        while more(): pass
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        print(base64.b64encode(out).decode())
        """;

    static async Task<(int Exit, string Screen)> OnTerminal(string answers, params string[] args)
    {
        var script = Path.Combine(Scratch.NewDir("pty"), "drive_tty.py");
        File.WriteAllText(script, PtyDriver);
        var r = await Proc.RunAsync("python3", [script, answers, "dotnet", Proc.BastionDll, .. args]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return (int.Parse(lines[0]), System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(lines[1])));
    }

    [Fact]
    public async Task Passwd_on_a_terminal_asks_twice_without_echo()
    {
        var file = Path.Combine(Scratch.NewDir("cli"), "users.htpasswd");
        var (exit, screen) = await OnTerminal("correct horse|correct horse", "passwd", file, "alice");
        Assert.True(exit == 0, screen);
        Assert.Contains("password for alice: ", screen);
        Assert.Contains("again: ", screen);
        Assert.DoesNotContain("correct", screen);
        Assert.True(await new IdentityStore(Htpasswd.Read(file, [])).VerifyAsync("alice", "correct horse"));

        (exit, screen) = await OnTerminal("one thing|another", "passwd", file, "bob");
        Assert.True(exit == 2, screen);
        Assert.Contains("the passwords do not match; nothing written", screen);
        Assert.False(Htpasswd.Read(file, []).ContainsKey("bob"));
    }

    [Fact]
    public async Task Passwd_stdin_reads_one_line_for_scripts()
    {
        var file = Path.Combine(Scratch.NewDir("cli"), "users.htpasswd");
        var r = await Proc.BastionAsync(["passwd", "--stdin", file, "carol"], stdin: "pa ss\n");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.DoesNotContain("password for", r.Stderr);
        Assert.True(await new IdentityStore(Htpasswd.Read(file, [])).VerifyAsync("carol", "pa ss"));
    }
}
