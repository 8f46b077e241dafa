using System.Text;
using Bastion.Configuration;
using Bastion.Policy;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// What an FTP command line tells the policy (SPEC 2.1): `command`, `path` (resolved and normalised), and the
/// server as `host`/`port`. The live session and `bastion explain` both go through here.
/// </summary>
public static class FtpAttributes
{
    /// <summary>Sets command, path, host and port; source and user are the caller's.</summary>
    public static void Fill(RequestAttributes a, FtpCommandSpec spec, string? path, HostPort? server)
    {
        a.Command = spec.Name;
        a.Path = path;
        if (server is not null)
        {
            a.Host = server.Host;
            a.Port = server.Port;
        }
    }

    /// <summary>
    /// A REQUEST for `explain` (`STOR /pub/f`, `CWD ../x`, `USER bob@10.0.0.5:21`): parsed and resolved as the session
    /// does, against `/` as the working directory.
    /// </summary>
    public static bool TryExplain(string request, HostPort? fixedServer, bool namedMode, RequestAttributes a, out string? error)
    {
        var line = Encoding.UTF8.GetBytes(request);
        if (FtpCommandParser.Parse(line, out var cmd) != FtpParse.Ok)
        {
            error = $"'{request}': {cmd.Error} (an FTP command line, like 'STOR /pub/f')";
            return false;
        }
        var spec = cmd.Spec!;
        string? path = null;
        if (cmd.HasPath)
        {
            if (!FtpPath.TryResolve("/", cmd.Path(line), out var p, out _, out var why))
            {
                error = $"'{request}': {why}";
                return false;
            }
            path = p;
        }
        else if (spec.HasPath || spec.Verb is FtpVerb.CDUP or FtpVerb.XCUP) path = "/";
        var server = fixedServer;
        if (spec.Verb == FtpVerb.USER && namedMode)
        {
            if (!FtpUserTarget.TryParse(cmd.Arg(line), out _, out server, out var why))
            {
                error = $"'{request}': {why}";
                return false;
            }
        }
        Fill(a, spec, path, server);
        error = null;
        return true;
    }
}
