using System.Text;
using Bastion.Identity;

namespace Bastion.Cli;

/// <summary>
/// `bastion passwd FILE USER`: on a terminal the password is asked twice without echo (as htpasswd and passwd do);
/// from a pipe, or with --stdin, it is the first line of standard input.
/// </summary>
static class PasswdCommand
{
    public static int Run(string[] args)
    {
        bool stdin = Commands.Flag(ref args, "--stdin");
        if (args.Length > 0 && args[0].StartsWith('-')) Commands.NoMore(args, "--stdin");
        if (args.Length != 2) throw new Commands.UsageException("passwd needs FILE USER");
        var (file, user) = (args[0], args[1]);
        if (user.Length == 0 || user.Contains(':') || user.Any(char.IsWhiteSpace))
            throw new Commands.UsageException("a user name must not be empty or contain ':' or spaces");

        string? password;
        if (stdin || Console.IsInputRedirected) password = Console.In.ReadLine();
        else
        {
            password = ReadHidden($"password for {user}: ");
            if (!string.IsNullOrEmpty(password) && ReadHidden("again: ") != password)
            {
                Console.Error.WriteLine("bastion: the passwords do not match; nothing written");
                return Commands.ExitUsage;
            }
        }
        if (string.IsNullOrEmpty(password))
        {
            Console.Error.WriteLine("bastion: empty password refused");
            return Commands.ExitUsage;
        }
        try { Htpasswd.Upsert(file, user, Htpasswd.HashBcrypt(password)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"bastion: cannot write {file}: {e.Message}");
            return Commands.ExitUsage;
        }
        Console.Error.WriteLine($"bastion: {user} saved in {file}");
        return Commands.ExitOk;
    }

    /// <summary>A line typed on the terminal, not echoed; backspace edits, Enter ends it.</summary>
    static string ReadHidden(string prompt)
    {
        Console.Error.Write(prompt);
        var sb = new StringBuilder();
        while (true)
        {
            var k = Console.ReadKey(intercept: true);
            if (k.Key == ConsoleKey.Enter) break;
            if (k.Key == ConsoleKey.Backspace)
            {
                if (sb.Length > 0) sb.Length--;
            }
            else if (k.KeyChar != '\0') sb.Append(k.KeyChar);
        }
        Console.Error.WriteLine();
        return sb.ToString();
    }
}
