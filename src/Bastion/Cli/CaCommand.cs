using Bastion.Gateway.Tls;

namespace Bastion.Cli;

/// <summary>`bastion ca init DIR [--rsa] [--name-constraint DOMAIN]...`: makes the TLS-inspection CA (SPEC 1).</summary>
static class CaCommand
{
    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] != "init") throw new Commands.UsageException("ca needs a subcommand: ca init DIR [--rsa] [--name-constraint DOMAIN]...");
        args = args[1..];
        var constraints = Commands.Options(ref args, "--name-constraint");
        bool rsa = args.Contains("--rsa");
        args = [.. args.Where(a => a != "--rsa")];
        if (args.Length != 1 || args[0].StartsWith('-')) throw new Commands.UsageException("ca init needs one folder: ca init DIR [--rsa] [--name-constraint DOMAIN]...");
        foreach (var c in constraints)
            if (c.Length == 0 || c.Contains('*') || c.Contains('/') || c.Any(char.IsWhiteSpace))
                throw new Commands.UsageException($"--name-constraint '{c}' is not a domain (example.com permits it and its subdomains)");
        try
        {
            var (cert, key) = CertificateAuthority.Create(args[0], rsa, constraints);
            Console.WriteLine($"bastion: inspection CA ({(rsa ? "RSA 3072" : "ECDSA P-256")}) written: {cert} (install it in clients' trust stores), {key} (mode 0600, keep it secret)");
            if (constraints.Count > 0) Console.WriteLine($"bastion: valid only for {string.Join(", ", constraints)} and their subdomains");
            return Commands.ExitOk;
        }
        catch (Exception e) when (e is CaException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"bastion: {e.Message}");
            return Commands.ExitUsage;
        }
    }
}
